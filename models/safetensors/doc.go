// Package safetensors reads and writes the Hugging Face safetensors format
// (https://github.com/huggingface/safetensors README at 0034b77), the
// checkpoint format of models/, so that PyTorch and transformers can read
// Loom's checkpoints and Loom can read theirs.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON
//
//	{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, …,
//	 "__metadata__": {"format": "pt"}}
//
// and the raw little-endian, row-major tensor bytes. Offsets are relative to
// the byte after the header and tile the data block without holes or
// overlaps. Write pads the header with spaces to a multiple of 8 bytes and
// always writes "format": "pt" in __metadata__, as transformers requires.
//
// Parse checks every rule of the format (header size ≤ 100 MB, valid JSON,
// no duplicate names, known dtypes, offsets that match the shape and tile the
// data) and names the tensor or field at fault. Tensor values are read as
// float32 from F32, F16, BF16 and F64; Write stores F32 or BF16 (rounded to
// nearest even).
//
// Usage:
//
//	var buf bytes.Buffer
//	err := safetensors.Write(&buf, []safetensors.Tensor{
//		safetensors.F32Tensor("proj.weight", []int{2, 3}, w),
//	}, map[string]string{"step": "100"})
//	f, err := safetensors.Parse(buf.Bytes())
//	w2, err := f.Float32("proj.weight")
package safetensors
