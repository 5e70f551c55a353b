"""Continual learning, training side: split the recent window, keep a replay sample of older windows,
fine-tune the serving model, judge champion against challenger, record decisions.

Kafka reading, export and publishing live in ``stream_app/finetune/`` (models never imports stream_app).
"""
