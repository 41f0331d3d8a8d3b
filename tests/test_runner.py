"""The notebook runner without nbclient's lost wake-up (frcnn_edu/checks/runner.py).

A socket whose asyncio wait never wakes early (the lost edge: it reports a waiting message only
when the wait runs out, as pyzmq's direct poll at expiry does) stands in for the race, which
cannot be produced on demand: nbclient's channel sits out the whole timeout, ours one slice.
Then a real kernel: outputs, errors and cell timeouts behave as nbclient's do.
"""
import asyncio
import time
from queue import Empty

import nbformat
import pytest
from jupyter_client.channels import AsyncZMQSocketChannel
from nbclient.exceptions import CellTimeoutError

from frcnn_edu.checks import runner


class LostWakeSocket:
    """A message arrives `arrives_after` s from now, but a poll only sees it when it expires."""

    def __init__(self, arrives_after):
        self.start, self.arrives_after, self.polls = time.monotonic(), arrives_after, 0

    async def poll(self, timeout_ms=None):
        self.polls += 1
        if timeout_ms is None:           # nbclient's iopub wait: no expiry, so no direct look
            await asyncio.sleep(3600)
        await asyncio.sleep(timeout_ms / 1000)
        return int(time.monotonic() - self.start >= self.arrives_after)


def _channel(cls, socket):
    channel = cls.__new__(cls)           # no ZMQ session: only get_msg's waiting is under test
    channel.socket = socket

    async def recv():
        return {"msg_type": "execute_reply"}
    channel._recv = recv
    return channel


def _timed(coro, limit=30):
    start = time.monotonic()
    result = asyncio.run(asyncio.wait_for(coro, limit))
    return result, time.monotonic() - start


@pytest.fixture(autouse=True)
def short_slices(monkeypatch):
    monkeypatch.setattr(runner, "SLICE", 0.05)


def test_a_lost_wake_up_costs_nbclients_channel_the_whole_timeout_and_ours_one_slice():
    msg, plain = _timed(_channel(AsyncZMQSocketChannel, LostWakeSocket(0.0)).get_msg(timeout=1.5))
    assert msg["msg_type"] == "execute_reply" and plain >= 1.5
    msg, sliced = _timed(_channel(runner.SlicedChannel, LostWakeSocket(0.0)).get_msg(timeout=1.5))
    assert msg["msg_type"] == "execute_reply" and sliced < 1.0


def test_a_message_that_arrives_later_is_found_within_a_slice_of_its_arrival():
    socket = LostWakeSocket(0.4)
    msg, seconds = _timed(_channel(runner.SlicedChannel, socket).get_msg(timeout=None))
    assert msg and 0.4 <= seconds < 5 and socket.polls >= 8


def test_nothing_arriving_raises_empty_at_the_timeout_not_before():
    channel = _channel(runner.SlicedChannel, LostWakeSocket(99.0))
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(channel.get_msg(timeout=0.33))
    assert 0.33 <= time.monotonic() - start < 5     # generous: a busy machine sleeps late
    with pytest.raises(Empty):                       # a zero timeout looks once and gives up
        asyncio.run(channel.get_msg(timeout=0))


def _run(sources, **kwargs):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    channels = []
    client = runner.notebook_client(nb, kernel_name="python3", **kwargs)
    client.on_cell_start = lambda **_: channels.append(
        (type(client.kc.shell_channel), type(client.kc.iopub_channel)))
    client.execute()
    return nb, channels


def test_a_real_kernel_runs_cells_with_their_outputs_and_errors():
    nb, channels = _run(["print('stdout'); 6 * 7", "1 / 0", "from IPython.display import HTML\n"
                         "HTML('<b>x</b>')"], timeout=60, allow_errors=True)
    assert channels and set(channels) == {(runner.SlicedChannel, runner.SlicedChannel)}
    first, second, third = (c.outputs for c in nb.cells)
    assert first[0]["text"] == "stdout\n" and first[1]["data"]["text/plain"] == "42"
    assert second[0]["output_type"] == "error" and second[0]["ename"] == "ZeroDivisionError"
    assert third[0]["data"]["text/html"] == "<b>x</b>"


def test_a_cell_over_its_timeout_still_times_out():
    start = time.monotonic()
    with pytest.raises(CellTimeoutError):
        _run(["import time; time.sleep(60)"], timeout=2)
    assert time.monotonic() - start < 30
