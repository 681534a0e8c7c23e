package gemm

import "os"

// active is the micro-kernel Sgemm uses: the fastest this CPU runs, unless the
// environment variable LOOM_SGEMM_KERNEL names another available one ("avx2" or
// "go"), which is how the slower paths are benchmarked on a fast CPU. An unknown
// or unavailable name is ignored; Kernel reports what runs.
var active = pick(os.Getenv("LOOM_SGEMM_KERNEL"))

func pick(name string) *kernel {
	ks := available()
	for _, k := range ks {
		if k.name == name {
			return k
		}
	}
	return ks[0]
}
