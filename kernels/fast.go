package kernels

// unaryFwd32 and unaryBwd32 are the float32 training path of the unary
// activations. They start as the float64-evaluated reference; faster float32
// approximations replace individual kinds here, each tested against unaryRef.
func unaryFwd32(k unaryKind, x, y []float32) { unaryFwd(k, x, y) }

func unaryBwd32(k unaryKind, x, dy, dx []float32) { unaryBwd(k, x, dy, dx) }
