package kbench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// BLASProbe is Python source that defines loom_blas(): the BLAS, LAPACK,
// BLIS, MKL and OpenMP libraries mapped into the process (read from
// /proc/self/maps, as threadpoolctl finds them), plus OpenBLAS's own
// config, core and thread count when OpenBLAS is one of them. Call it after
// the first matrix product, when the library has been loaded. Every bench
// that runs a PyTorch or numpy baseline embeds it, and the Go side judges
// the answer with BaselineBLAS.
const BLASProbe = `
def loom_blas():
    import ctypes, re
    libs = []
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if p.startswith("/") and p not in libs and re.search(r"(blas|lapack|mkl|blis|omp)[^/]*\.so", p.rsplit("/", 1)[-1]):
                libs.append(p)
    info = {"libs": libs}
    # OpenBLAS's own library first, then its libblas, then its liblapack.
    for p in sorted(libs, key=lambda p: ("openblas" not in p.rsplit("/", 1)[-1], "blas" not in p.rsplit("/", 1)[-1])):
        if "openblas" in p:
            try:
                ob = ctypes.CDLL(p)
                ob.openblas_get_config.restype = ctypes.c_char_p
                ob.openblas_get_corename.restype = ctypes.c_char_p
                info.update(config=ob.openblas_get_config().decode(), core=ob.openblas_get_corename().decode(),
                            threads=ob.openblas_get_num_threads(), openblas=p)
            except Exception:
                pass
            break
    return info
`

// BLASInfo is what BLASProbe reports, as JSON.
type BLASInfo struct {
	Libs     []string `json:"libs"`
	OpenBLAS string   `json:"openblas,omitempty"` // the OpenBLAS library, when it answered
	Config   string   `json:"config,omitempty"`
	Core     string   `json:"core,omitempty"`
	Threads  int      `json:"threads,omitempty"`
}

// Baseline describes the BLAS and threading a baseline process runs on.
type Baseline struct {
	Kind    string   `json:"kind"`              // openblas, mkl, blis, or other (none mapped: linked statically)
	Lib     string   `json:"lib,omitempty"`     // the BLAS library file, when one is mapped
	Config  string   `json:"config,omitempty"`  // OpenBLAS's build config
	Core    string   `json:"core,omitempty"`    // OpenBLAS's kernel
	Threads int      `json:"threads,omitempty"` // OpenBLAS's thread count
	OpenMP  string   `json:"openmp,omitempty"`  // the OpenMP runtime mapped, if any
	Libs    []string `json:"libs,omitempty"`
}

func (b Baseline) String() string {
	s := b.Kind
	if b.Config != "" {
		s += " " + b.Config
	}
	if b.Core != "" {
		s += " core=" + b.Core
	}
	if b.Threads > 0 {
		s += " threads=" + strconv.Itoa(b.Threads)
	}
	if b.Lib != "" {
		s += " (" + b.Lib + ")"
	}
	if b.OpenMP != "" {
		s += ", OpenMP " + filepath.Base(b.OpenMP)
	}
	return s
}

// ReferenceBLASError refuses a baseline that runs on Netlib's reference
// BLAS, which is 10 to 40 times slower than a tuned one: any ratio against
// it flatters Loom.
type ReferenceBLASError struct {
	Who string // e.g. "PyTorch 2.1 (/usr/bin/python3)"
	Lib string
}

func (e *ReferenceBLASError) Error() string {
	return fmt.Sprintf("%s runs on the reference BLAS %s, which is many times slower than a tuned one, so the ratio would flatter Loom; "+
		"install OpenBLAS (Debian: apt-get install libopenblas0-pthread, which becomes libblas.so.3) and run again", e.Who, e.Lib)
}

// BaselineBLAS judges a BLASProbe answer: it names the library and
// refuses the reference BLAS (a libblas.so with no OpenBLAS, MKL or BLIS
// in the process). A process with no BLAS mapped at all links one
// statically (PyTorch's pip wheels link MKL); it is reported as "other".
func BaselineBLAS(who string, info BLASInfo) (Baseline, error) {
	b := Baseline{Kind: "other", Config: info.Config, Core: info.Core, Threads: info.Threads, Libs: info.Libs}
	var reference string
	for _, p := range info.Libs {
		base := strings.ToLower(filepath.Base(p))
		low := strings.ToLower(p)
		switch {
		case strings.Contains(low, "openblas"):
			if b.Kind != "openblas" {
				b.Kind, b.Lib = "openblas", p
			}
		case strings.Contains(base, "mkl"):
			if b.Kind == "other" {
				b.Kind, b.Lib = "mkl", p
			}
		case strings.Contains(base, "blis"):
			if b.Kind == "other" {
				b.Kind, b.Lib = "blis", p
			}
		case strings.HasPrefix(base, "libblas.so"):
			reference = p
		case strings.Contains(base, "omp"):
			b.OpenMP = p
		}
	}
	if info.OpenBLAS != "" {
		b.Kind, b.Lib = "openblas", info.OpenBLAS
	}
	if b.Kind == "other" && reference != "" {
		return b, &ReferenceBLASError{Who: who, Lib: reference}
	}
	return b, nil
}

// BaselineEnv is the environment a baseline child runs with, set up the
// way a PyTorch user tunes a CPU run: every thread pool the same size
// as Loom's, and OpenMP's idle threads sleeping (OMP_WAIT_POLICY=PASSIVE)
// rather than spinning against OpenBLAS's own threads, which made
// PyTorch slower at 2 threads than at 1 (an OMP_WAIT_POLICY in the
// environment wins: WaitPolicy). coreType, if set, pins OpenBLAS's kernel
// (OPENBLAS_CORETYPE).
func BaselineEnv(threads int, coreType string) []string {
	n := strconv.Itoa(threads)
	env := append(os.Environ(), "OPENBLAS_NUM_THREADS="+n, "OMP_NUM_THREADS="+n, "MKL_NUM_THREADS="+n, "OMP_WAIT_POLICY="+WaitPolicy())
	if coreType != "" {
		env = append(env, "OPENBLAS_CORETYPE="+coreType)
	}
	return env
}

// WaitPolicy is the OMP_WAIT_POLICY baselines run with: the
// environment's, or PASSIVE.
func WaitPolicy() string {
	if p := os.Getenv("OMP_WAIT_POLICY"); p != "" {
		return p
	}
	return "PASSIVE"
}

// DefaultCoreType is the OPENBLAS_CORETYPE the baselines pin by default:
// SkylakeX (OpenBLAS's AVX-512 kernels, the ones Loom's are compared
// with) where the CPU has AVX-512F, and none (OpenBLAS detects) elsewhere,
// where SkylakeX would fault.
func DefaultCoreType() string {
	if strings.Contains(" "+cpuField("flags")+" ", " avx512f ") {
		return "SkylakeX"
	}
	return ""
}

// CPUModel is the machine's CPU as /proc/cpuinfo names it, with the
// number of CPUs Go sees: every bench result records it, so a figure is
// never read as another machine's.
func CPUModel() string {
	m := cpuField("model name")
	if m == "" {
		m = runtime.GOARCH
	}
	return fmt.Sprintf("%s, %d CPUs", m, runtime.NumCPU())
}

// cpuField is the first value of field in /proc/cpuinfo, or "".
func cpuField(field string) string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == field {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
