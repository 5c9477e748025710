"""Loopback fakes of outside services (print-and-mail, SMS, ...) for tests and the demo."""
