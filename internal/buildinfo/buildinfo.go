package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"golang.org/x/sys/cpu"
)

// Info describes the running binary.
type Info struct {
	Module    string   `json:"module"`
	Version   string   `json:"version"`
	Revision  string   `json:"revision"`
	Modified  bool     `json:"modified"`
	BuildTime string   `json:"build_time,omitempty"`
	GoVersion string   `json:"go_version"`
	OS        string   `json:"os"`
	Arch      string   `json:"arch"`
	CPU       []string `json:"cpu_features"`
}

// Read returns the build information of the running binary. Fields that the
// toolchain did not record (for example the VCS revision under `go run` or
// `go test`) are reported as "unknown".
func Read() Info {
	in := Info{
		Module:    "github.com/loomtrain/loom",
		Version:   "unknown",
		Revision:  "unknown",
		GoVersion: runtime.Version(),
		OS:        runtime.GOOS,
		Arch:      runtime.GOARCH,
		CPU:       CPUFeatures(),
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return in
	}
	if bi.Main.Path != "" {
		in.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		in.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		case "vcs.time":
			in.BuildTime = s.Value
		}
	}
	return in
}

// CPUFeatures lists the instruction-set extensions that the CPU kernels
// dispatch on, as detected at run time on this machine.
func CPUFeatures() []string {
	var f []string
	switch runtime.GOARCH {
	case "amd64":
		add := func(ok bool, name string) {
			if ok {
				f = append(f, name)
			}
		}
		add(cpu.X86.HasAVX2, "avx2")
		add(cpu.X86.HasFMA, "fma")
		add(cpu.X86.HasAVX512F, "avx512f")
		add(cpu.X86.HasAVX512BW, "avx512bw")
		add(cpu.X86.HasAVX512VL, "avx512vl")
	case "arm64":
		if cpu.ARM64.HasASIMD {
			f = append(f, "neon")
		}
	}
	return f
}

// String renders the information as the `loom version` text.
func (in Info) String() string {
	var b strings.Builder
	rev := in.Revision
	if in.Modified {
		rev += " (modified)"
	}
	cpus := strings.Join(in.CPU, " ")
	if cpus == "" {
		cpus = "none (pure Go kernels)"
	}
	fmt.Fprintf(&b, "loom %s\n", in.Version)
	fmt.Fprintf(&b, "  module:   %s\n", in.Module)
	fmt.Fprintf(&b, "  revision: %s\n", rev)
	if in.BuildTime != "" {
		fmt.Fprintf(&b, "  built:    %s\n", in.BuildTime)
	}
	fmt.Fprintf(&b, "  go:       %s\n", in.GoVersion)
	fmt.Fprintf(&b, "  platform: %s/%s\n", in.OS, in.Arch)
	fmt.Fprintf(&b, "  cpu:      %s\n", cpus)
	return b.String()
}
