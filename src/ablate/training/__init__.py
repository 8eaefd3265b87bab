"""What a training run watches besides its steps: the learning curve, divergence, the step limit
and whether each regularizer acted (acted.py).

Each is a Lightning callback that train.py always adds (not a conf/callbacks entry, so
`callbacks=none` keeps them): the LightningModule holds only the objective, the metrics and the steps.
"""
