"""The micro-deposit channel: amounts, payout backends, bank details, the deposits page."""
