package kernels

import "math"

// ToBF16 converts float32 values to bfloat16 bits (the top 16 bits of the
// float32) with round-to-nearest-even, as torch's .to(torch.bfloat16). NaN
// stays a (quiet) NaN. dst must hold len(src) values.
func ToBF16(dst []uint16, src []float32) {
	if len(src) == 0 {
		return
	}
	_ = dst[len(src)-1]
	for i, f := range src {
		b := math.Float32bits(f)
		if f != f {
			dst[i] = uint16(b>>16) | 0x40 // keep it a NaN after truncation
			continue
		}
		b += 0x7fff + (b>>16)&1
		dst[i] = uint16(b >> 16)
	}
}

// FromBF16 widens bfloat16 bits to float32 exactly. dst must hold len(src) values.
func FromBF16(dst []float32, src []uint16) {
	if len(src) == 0 {
		return
	}
	_ = dst[len(src)-1]
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}
