"""Real Apache Kafka brokers for tests (``apache``): see tests/brokers/apache.py."""
