"""postoffice — a complete Internet mail system in Python.

Description:
    SMTP in, a durable spool, routing, local delivery into Maildir/mbox,
    and (in later issues) remote delivery, POP3 and IMAP. See DESIGN.md for
    the plan of the house and docs/ for the user documentation.
"""

__version__ = "0.1.0"
