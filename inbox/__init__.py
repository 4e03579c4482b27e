"""The support domain: models, ingestion, threading, replies, the outbox and events.

Functions here take a SQLAlchemy session and never import Flask.
"""
