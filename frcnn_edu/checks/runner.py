"""Run a notebook with nbclient without the lost wake-up that stalls a cell until its timeout.

    from frcnn_edu.checks.runner import notebook_client
    notebook_client(nb, timeout=600, kernel_name="python3").execute()

What goes wrong without it. nbclient waits for a cell's reply with one long
``shell_channel.get_msg(timeout=cell_timeout)``, an asyncio wait on the ZeroMQ socket's file
descriptor. That descriptor is edge-triggered: it signals a *change* of state, and a change that
ZeroMQ absorbs while the socket is being serviced for something else raises no new signal. Then
the reply sits in the socket, the kernel is idle, and the client sleeps until the cell's timeout;
at the timeout pyzmq polls the socket directly, finds the reply, and the cell "succeeds" 600 s
late. We saw it in about 1 run in 8 of a lesson (nbclient 0.11, jupyter_client 8.10, pyzmq 27.3,
ipykernel 7.4 and 6.29), as nbclient issue #312 describes; ``benchmarks/notebook_stalls.py``
counts the stalls with nbclient's client and with this one.

The fix is the same direct poll, made every `SLICE` seconds: the channels below wait in slices
and look at the socket itself between them, so a missed signal costs at most one slice. Nothing
else about nbclient changes (timeouts, errors, outputs, widgets).
"""
import math
import time
from queue import Empty

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from traitlets import DottedObjectName, Type

SLICE = 1.0   # seconds between direct looks at the socket: the most a lost wake-up can cost


class SlicedChannel(AsyncZMQSocketChannel):
    """An asyncio ZMQ channel whose `get_msg` waits in slices of `SLICE` seconds."""

    async def get_msg(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait = SLICE if left is None else min(SLICE, left)
            if await self.socket.poll(math.ceil(wait * 1000)):   # at expiry pyzmq looks directly
                return await self._recv()
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty


class SlicedKernelClient(AsyncKernelClient):
    """nbclient's kernel client, with sliced waits on the channels it reads."""

    shell_channel_class = Type(SlicedChannel)
    iopub_channel_class = Type(SlicedChannel)
    control_channel_class = Type(SlicedChannel)


class SlicedKernelManager(AsyncKernelManager):
    """A kernel manager whose clients are `SlicedKernelClient`s."""

    # AsyncKernelManager gives client_factory a fixed default, so the name alone is not enough
    client_class = DottedObjectName("frcnn_edu.checks.runner.SlicedKernelClient")
    client_factory = Type(SlicedKernelClient)


def notebook_client(nb, **kwargs):
    """`nbclient.NotebookClient(nb, **kwargs)` with the sliced kernel client."""
    from nbclient import NotebookClient

    return NotebookClient(nb, kernel_manager_class=SlicedKernelManager, **kwargs)
