// Package lossline formats a training step's losses for people: the total
// with the terms it is made of and the weights that make it, so that
// "loss 1.52 = 0.5×ce_text 3.05" reads as the sum it is. `loom dev`'s
// progress lines and `loom status` use it.
package lossline
