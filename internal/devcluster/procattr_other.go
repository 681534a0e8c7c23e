//go:build !linux

package devcluster

import "syscall"

// childProcAttr puts a child in its own process group, so that Ctrl-C at
// the terminal reaches only loom dev, which stops its children in order.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
