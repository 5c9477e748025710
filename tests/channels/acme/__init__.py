"""An example third-party channel (the code of docs/writing-a-channel.md), tested end to end against a fake API."""
