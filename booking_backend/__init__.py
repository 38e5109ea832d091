"""A realistic vaccination booking site, the system the waiting room protects.

Phone number, PIN by SMS, centre and time, booking reference; registration without a date
once everything is booked. It reproduces what made 15 January 2021 hard: a finite stock of
appointments in SQLite, an SMS gateway that sends 20 messages a second, and a worker pool that
slows down and sheds load. See booking_backend/README.md.
"""
