"""The SMS channel (Twilio), phone numbers and the delivery-status webhook."""
