"""CPU cost of the SMTP engine alone for one small message (no sockets, no session).

Usage: python bench/engine_bench.py [--rounds N]. Prints ms of CPU per message.
"""

from __future__ import annotations

import argparse
import time

from postoffice.smtp import events as ev
from postoffice.smtp import replies
from postoffice.smtp.events import EngineConfig
from postoffice.smtp.protocol import ServerProtocol
from postoffice.smtp.replies import Reply

HOST = "bench.example.test"
DIALOGUE = (
    b"EHLO client.example\r\nMAIL FROM:<a@b.example> SIZE=900\r\n"
    b"RCPT TO:<x@y.example>\r\nDATA\r\n"
    + b"Subject: test\r\nFrom: a@b.example\r\n\r\n"
    + b"A line of message text.\r\n" * 200
    + b".\r\nQUIT\r\n"
)
ANSWERS: dict[type, Reply] = {
    ev.Hello: Reply(code=250, text=HOST),
    ev.MailFrom: replies.SENDER_OK,
    ev.RcptTo: replies.RECIPIENT_OK,
    ev.DataStart: replies.START_DATA,
    ev.DataEnd: replies.QUEUED,
}


def one() -> None:
    engine = ServerProtocol(EngineConfig(hostname=HOST))
    engine.greeting(replies.CLOSING)
    events = engine.receive_data(DIALOGUE)
    while events and events[-1].needs_answer:
        engine.answer(ANSWERS[type(events[-1])])
        events = engine.receive_data(b"")
    engine.data_to_send()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5000)
    args = ap.parse_args()
    results = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(args.rounds):
            one()
        results.append((time.process_time() - start) / args.rounds * 1000)
    results.sort()
    print(f"engine: {results[2]:.4f} ms CPU per 5 KiB message (median of 5 x {args.rounds})")


if __name__ == "__main__":
    main()
