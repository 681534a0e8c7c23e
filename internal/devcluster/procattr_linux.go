package devcluster

import "syscall"

// childProcAttr puts a child in its own process group (Ctrl-C at the
// terminal reaches only loom dev, which stops its children in order) and
// kills it if loom dev dies without stopping it.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
