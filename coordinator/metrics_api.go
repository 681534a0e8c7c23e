package coordinator

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomtrain/loom/api/loompb"
)

// stepRecords converts a report's step metrics.
func stepRecords(in []*loompb.StepMetrics) []StepRecord {
	if len(in) == 0 {
		return nil
	}
	out := make([]StepRecord, 0, len(in))
	for _, m := range in {
		v := make(map[string]Float, len(m.Values))
		for k, x := range m.Values {
			v[k] = Float(x)
		}
		out = append(out, StepRecord{Step: m.Step, Stage: int(m.Stage), UnixMs: m.UnixMs, Values: v})
	}
	return out
}

// MaxMetricPoints bounds max_points of a GetMetrics request (the history
// holds fewer rows anyway).
const MaxMetricPoints = 100000

// MetricQueryOf checks a GetMetrics request and returns its query.
func MetricQueryOf(req *loompb.GetMetricsRequest) (MetricQuery, error) {
	q := MetricQuery{Series: req.Series, From: req.FromStep, To: req.ToStep, MaxPoints: int(req.MaxPoints)}
	switch {
	case req.FromStep < 0 || req.ToStep < 0:
		return q, status.Errorf(codes.InvalidArgument, "from_step %d and to_step %d must not be negative", req.FromStep, req.ToStep)
	case req.ToStep > 0 && req.FromStep > req.ToStep:
		return q, status.Errorf(codes.InvalidArgument, "from_step %d is after to_step %d", req.FromStep, req.ToStep)
	case req.MaxPoints < 0 || req.MaxPoints > MaxMetricPoints:
		return q, status.Errorf(codes.InvalidArgument, "max_points %d is outside [0, %d]", req.MaxPoints, MaxMetricPoints)
	}
	if req.Stage != nil {
		if *req.Stage < 0 {
			return q, status.Errorf(codes.InvalidArgument, "stage %d is negative", *req.Stage)
		}
		st := int(*req.Stage)
		q.Stage = &st
	}
	return q, nil
}

// MetricsProto answers a metric query from a job's history (nil: the job
// has none yet).
func MetricsProto(job string, h *MetricHistory, q MetricQuery) *loompb.GetMetricsResponse {
	out := &loompb.GetMetricsResponse{Job: job, Resolution: 1, LastStep: h.Last()}
	if h != nil && h.Width > 0 {
		out.Resolution = h.Width
	}
	names, series := h.Series(q)
	for i, n := range names {
		ms := &loompb.MetricSeries{Name: n}
		for _, p := range series[i] {
			ms.Points = append(ms.Points, &loompb.MetricPoint{Step: p.Step, FirstStep: p.First, Stage: int32(p.Stage),
				Generation: p.Gen, UnixMs: p.UnixMs, Value: p.Value, Steps: p.N})
		}
		out.Series = append(out.Series, ms)
	}
	return out
}

func (s jobsServer) GetMetrics(ctx context.Context, req *loompb.GetMetricsRequest) (*loompb.GetMetricsResponse, error) {
	if err := s.current(ctx); err != nil {
		return nil, err
	}
	q, err := MetricQueryOf(req)
	if err != nil {
		return nil, err
	}
	var out *loompb.GetMetricsResponse
	s.cfg.FSM.Read(func(st *State) {
		if st.Jobs[req.Job] != nil {
			out = MetricsProto(req.Job, st.Metrics[req.Job], q)
		}
	})
	if out == nil {
		return nil, status.Errorf(codes.NotFound, "no job named %q", req.Job)
	}
	return out, nil
}
