"""The scorecard's scenarios, one module each: what happens to the three levels, how each
level is observed through the lab, and how the observation reads as that row's cells.

    training.py      every level trains twice on the shared data (what two rows compare)
    same_model.py    the services answer the held-out birds alike
    bad_requests.py  invalid payloads get a 4xx
    endpoints.py     health, ready and model endpoints
    knowledge.py     what a service knows about its model
    serving.py       latency and throughput under load
    reproducible.py  two trainings give the same model
    records.py       what record of training is left
    corrupted.py     a corrupted training batch arrives
    worse_model.py   a worse model is trained
    new_data.py      new data arrives: does the service follow?
    rollback.py      the latest model must be withdrawn
    drift.py         the world moves: drift in served traffic, and live accuracy
    level_tests.py   the tests that guard each level
    cost.py          what each level costs: people, machines, code to keep

A scenario returns its row (or rows); the runner (runner.py) decides what runs when and puts
the rows in the table.
"""
