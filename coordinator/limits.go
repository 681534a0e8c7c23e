package coordinator

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Input limits of the API (invariant 8: a hostile client cannot grow the
// coordinator's memory or log). Every string, bytes, repeated and map field
// of every request is checked against its limit before anything else
// happens to the request: a field not listed in fieldLimits gets the
// default for its kind, so a field added to the API later is bounded too.
const (
	// MaxMessageBytes bounds a whole request (gRPC refuses larger ones
	// before decoding them).
	MaxMessageBytes = 4 << 20
	// MaxStringBytes is the default for strings: names, IDs, addresses.
	MaxStringBytes = 256
	// MaxBytesField is the default for bytes fields.
	MaxBytesField = 64 << 10
	// MaxEntries is the default for repeated and map fields.
	MaxEntries = 256
	// MaxRequestID bounds request IDs, which the dedup table keeps.
	MaxRequestID = 128
	// MaxManifestBytes bounds a submitted manifest.
	MaxManifestBytes = 1 << 20
	// MaxCheckpointObjects bounds the objects of one checkpoint.
	MaxCheckpointObjects = 1024
	// MaxObjectPath bounds a checkpoint object's path.
	MaxObjectPath = 1024
	// MaxErrorText bounds a worker's failure report.
	MaxErrorText = 4096
	// MaxCommandBytes bounds a command forwarded between nodes.
	MaxCommandBytes = MaxMessageBytes - 1024
)

// fieldLimits overrides the default limit of a field (bytes for strings
// and bytes, entries for repeated and map fields).
var fieldLimits = map[protoreflect.FullName]int{
	"loom.v1.SubmitJobRequest.manifest_yaml":     MaxManifestBytes,
	"loom.v1.SubmitJobRequest.request_id":        MaxRequestID,
	"loom.v1.CancelJobRequest.request_id":        MaxRequestID,
	"loom.v1.ResumeJobRequest.request_id":        MaxRequestID,
	"loom.v1.CommitCheckpointRequest.request_id": MaxRequestID,
	"loom.v1.ReportFailureRequest.request_id":    MaxRequestID,
	"loom.v1.CommitCheckpointRequest.objects":    MaxCheckpointObjects,
	"loom.v1.CheckpointObject.path":              MaxObjectPath,
	"loom.v1.CheckpointObject.sha256":            64,
	"loom.v1.ReportFailureRequest.error":         MaxErrorText,
	"loom.v1.ReportProgressRequest.losses":       64,
	"loom.v1.ReportProgressRequest.steps":        MaxStepRecords,
	"loom.v1.CommitCheckpointRequest.steps":      MaxStepRecords,
	"loom.v1.StepMetrics.values":                 MaxMetricSeries,
	"loom.v1.GetMetricsRequest.series":           MaxMetricSeries,
	"loom.v1.ApplyRequest.command":               MaxCommandBytes,
	"google.protobuf.BytesValue.value":           4096,
}

// CheckLimits checks every string, bytes, repeated and map field of m
// (recursively) against its limit and names the first field over it.
func CheckLimits(m proto.Message) error {
	return checkMessage(m.ProtoReflect(), "")
}

func limitOf(fd protoreflect.FieldDescriptor) int {
	if n, ok := fieldLimits[fd.FullName()]; ok {
		return n
	}
	switch {
	case fd.IsList() || fd.IsMap():
		return MaxEntries
	case fd.Kind() == protoreflect.BytesKind:
		return MaxBytesField
	}
	return MaxStringBytes
}

func checkMessage(m protoreflect.Message, path string) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := path + string(fd.Name())
		limit := limitOf(fd)
		switch {
		case fd.IsList():
			l := v.List()
			if l.Len() > limit {
				err = fmt.Errorf("%s has %d entries; the limit is %d", name, l.Len(), limit)
				return false
			}
			for i := 0; i < l.Len() && err == nil; i++ {
				err = checkScalar(fd, l.Get(i), fmt.Sprintf("%s[%d]", name, i), elemLimit(fd))
			}
		case fd.IsMap():
			mp := v.Map()
			if mp.Len() > limit {
				err = fmt.Errorf("%s has %d entries; the limit is %d", name, mp.Len(), limit)
				return false
			}
			mp.Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				key := k.String()
				if len(key) > MaxStringBytes {
					err = fmt.Errorf("%s has a key of %d bytes; the limit is %d", name, len(key), MaxStringBytes)
					return false
				}
				err = checkScalar(fd.MapValue(), mv, fmt.Sprintf("%s[%q]", name, key), limitOf(fd.MapValue()))
				return err == nil
			})
		default:
			err = checkScalar(fd, v, name, limit)
		}
		return err == nil
	})
	return err
}

// elemLimit is the limit of one element of a repeated field: the
// default of its kind.
func elemLimit(fd protoreflect.FieldDescriptor) int {
	if fd.Kind() == protoreflect.BytesKind {
		return MaxBytesField
	}
	return MaxStringBytes
}

func checkScalar(fd protoreflect.FieldDescriptor, v protoreflect.Value, name string, limit int) error {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if n := len(v.String()); n > limit {
			return fmt.Errorf("%s is %s; the limit is %s", name, size(n), size(limit))
		}
	case protoreflect.BytesKind:
		if n := len(v.Bytes()); n > limit {
			return fmt.Errorf("%s is %s; the limit is %s", name, size(n), size(limit))
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return checkMessage(v.Message(), name+".")
	}
	return nil
}

func size(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return strings.TrimSpace(fmt.Sprintf("%d bytes", n))
}
