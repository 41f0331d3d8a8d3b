"""Multiple-choice answers stored as salted hashes, so that reading the package's source does
not give the quiz away (it only hides them from a glance: five letters are quickly tried).

    key = answer_key("lesson05.dropped_gradient", "c")   # what the checker module stores
    is_answer("lesson05.dropped_gradient", student_choice, key)

A key is sha256(salt + normalized answer), where the salt is the exercise id and the answer is
normalized as the checkers read it ("(C) " -> "c").
"""
import hashlib


def normalize(answer):
    """'(C) ' -> 'c': strip spaces and brackets, lower case."""
    return str(answer).strip().strip("()").strip().lower() if answer is not None else ""


def answer_key(exercise_id, answer):
    """The stored form of an answer: 16 hex digits of sha256(exercise id + ':' + answer)."""
    return hashlib.sha256(f"{exercise_id}:{normalize(answer)}".encode()).hexdigest()[:16]


def is_answer(exercise_id, answer, key):
    return answer_key(exercise_id, answer) == key
