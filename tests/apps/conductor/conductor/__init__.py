"""Conductor CRM: contacts on MongoDB, events over websockets, Celery worker and beat on Redis."""
