"""Billing consumer: RabbitMQ's billing_queue into PostgreSQL's orders table."""
