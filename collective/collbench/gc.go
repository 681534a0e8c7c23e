package collbench

import "runtime/debug"

func setGCPercent(p int) int { return debug.SetGCPercent(p) }
