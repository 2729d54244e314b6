"""Training: TrainState, pure steps, device layouts, tasks and the train_and_evaluate loop."""
