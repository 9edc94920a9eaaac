"""Downstream evaluation of frozen and fine-tuned vision encoders (the paper's Tables III to VII).

A request (:mod:`imitate.evaluate.request`) names a task, a prepared dataset and a method; the task's
module under :mod:`imitate.evaluate.tasks` runs it over every subset fraction and seed and returns the
result rows (:mod:`imitate.evaluate.rows`). Every head is trained by the one loop of
:mod:`imitate.evaluate.fit`; data access is under :mod:`imitate.evaluate.data`, metrics under
:mod:`imitate.evaluate.metrics`. This package never imports :mod:`imitate.train`.
"""
