"""The local stack: the three services as processes against local PostgreSQL and RabbitMQ."""
