"""The continual-learning job: read the recent stream (``kafka``), fine-tune, judge and publish (``job``)."""
