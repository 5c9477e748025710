"""The Django app of deferred-confirmation (AppConfig label ``confirmation``)."""
