"""The ablation techniques: one module per config group (conf/norm, conf/init, conf/reg, conf/scheduler)."""
