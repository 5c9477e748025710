"""Tests of the channels other than email, one package per channel."""
