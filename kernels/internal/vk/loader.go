package vk

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// ErrNoLoader means the Vulkan loader (libvulkan.so.1) could not be opened.
var ErrNoLoader = errors.New("vulkan: no Vulkan loader")

// ErrNoDevice means the loader found no physical device with a compute queue.
var ErrNoDevice = errors.New("vulkan: no Vulkan device with a compute queue")

var (
	loadOnce sync.Once
	loadErr  error
	gipa     uintptr // vkGetInstanceProcAddr
)

// libNames are tried in order (the soname first, as the loader's docs ask).
var libNames = []string{"libvulkan.so.1", "libvulkan.so"}

func load() error {
	loadOnce.Do(func() {
		if runtime.GOOS != "linux" && runtime.GOOS != "freebsd" {
			loadErr = fmt.Errorf("%w: this backend loads libvulkan.so on Linux and FreeBSD only (GOOS=%s)", ErrNoLoader, runtime.GOOS)
			return
		}
		var lib uintptr
		var err error
		for _, n := range libNames {
			if lib, err = purego.Dlopen(n, purego.RTLD_NOW|purego.RTLD_GLOBAL); err == nil {
				break
			}
		}
		if err != nil {
			loadErr = fmt.Errorf("%w: dlopen %s: %v (Debian: apt-get install libvulkan1 mesa-vulkan-drivers)", ErrNoLoader, libNames[0], err)
			return
		}
		if gipa, err = purego.Dlsym(lib, "vkGetInstanceProcAddr"); err != nil {
			loadErr = fmt.Errorf("%w: dlsym vkGetInstanceProcAddr: %v", ErrNoLoader, err)
		}
	})
	return loadErr
}

// cstr returns a NUL-terminated copy of s (the caller keeps it alive).
func cstr(s string) *byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return &b[0]
}

// call runs the C function fn with args and returns its first result.
//
// Like SyscallN it is go:uintptrescapes: a Go pointer converted to
// uintptr in the argument list of a call moves its object to the heap and
// keeps it alive until the call returns. Without the pragma a stack
// variable whose address the driver writes to could move when the
// goroutine's stack grows inside the call, and the driver would write into
// freed stack memory.
//
//go:uintptrescapes
func call(fn uintptr, args ...uintptr) uintptr {
	r, _, _ := purego.SyscallN(fn, args...)
	return r
}

// instanceProc resolves an instance-level (or, with instance 0, global)
// entry point.
func instanceProc(instance handle, name string) (uintptr, error) {
	p := cstr(name)
	fn := call(gipa, instance, uintptr(unsafe.Pointer(p)))
	runtime.KeepAlive(p)
	if fn == 0 {
		return 0, fmt.Errorf("vulkan: vkGetInstanceProcAddr(%s) returned NULL", name)
	}
	return fn, nil
}

// procTable fills the fields of a table of entry points from a resolver,
// stopping at the first missing one.
type procTable struct {
	resolve func(name string) (uintptr, error)
	err     error
}

func (t *procTable) get(name string) uintptr {
	if t.err != nil {
		return 0
	}
	fn, err := t.resolve(name)
	if err != nil {
		t.err = err
	}
	return fn
}
