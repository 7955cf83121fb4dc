"""Plain Flower (Message API) FedAvg app: the round-latency baseline."""
