"""The ClientApp: a site trains the global model on its shard, as a Federity hospital does in the demo.

The shard is the CSV at the SuperNode's ``data-path`` node config (``flower-supernode --node-config
'data-path="..."'``); the training parameters come from the run config (the demo's DEMO_PARAMS). Each round's batch
order is drawn from ``seed`` and the round number (as Federity draws fresh randomness each round). The reply carries
the trained arrays, ``num-examples`` (FedAvg's weight) and the training metrics and, for the benchmark, when the
ClientApp's work (reading the shard, training, scoring) started and ended (wall clock, seconds since the epoch).
"""

from __future__ import annotations

import time

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flower_rounds.task import evaluate, load_csv, train

app = ClientApp()


@app.train()
def local_train(msg: Message, context: Context) -> Message:
    """Train the received model on this site's shard and reply with the new weights."""
    started = time.time()
    data_path = context.node_config.get("data-path")
    if not data_path:
        raise ValueError("this SuperNode has no data-path: start it with --node-config 'data-path=\"...\"'")
    x, y = load_csv(str(data_path))
    weight, bias = msg.content["arrays"].to_numpy_ndarrays()
    config = context.run_config
    server_round = int(msg.content["config"]["server-round"])
    rng = np.random.default_rng([int(config["seed"]), server_round])
    weight, bias = train(weight, bias, x, y, lr=float(config["lr"]), epochs=int(config["local-epochs"]),
                         batch_size=int(config["batch-size"]), rng=rng)
    local = evaluate(weight, bias, x, y)
    ended = time.time()
    metrics = MetricRecord({"num-examples": len(y), "train-loss": local["loss"], "train-accuracy": local["accuracy"]})
    timing = ConfigRecord({"started": started, "ended": ended})  # not a metric: FedAvg would average it
    return Message(RecordDict({"arrays": ArrayRecord([weight, bias]), "metrics": metrics, "timing": timing}),
                   reply_to=msg)
