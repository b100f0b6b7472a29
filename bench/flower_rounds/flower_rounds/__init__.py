"""Federity's demo task as a Flower app: the ServerApp (FedAvg, timed rounds) and the ClientApp (numpy logistic
regression trained on the site's shard), for bench/bench_flower_rounds.py."""
