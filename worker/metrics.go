package worker

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/loomtrain/loom/trainer"
)

// metrics are the agent's Prometheus series, on a registry of its own (two
// agents in one test process must not collide).
type metrics struct {
	reg         *prometheus.Registry
	stepTime    prometheus.Histogram
	commWait    prometheus.Histogram
	tokensPS    prometheus.Gauge
	loss        *prometheus.GaugeVec
	samples     prometheus.Gauge
	step        prometheus.Gauge
	steps       prometheus.Counter
	generation  prometheus.Gauge
	ckptBlocked prometheus.Histogram
	ckptUpload  prometheus.Histogram
	ckptCommit  prometheus.Histogram
	ckpts       *prometheus.CounterVec
	generations *prometheus.CounterVec
	reports     *prometheus.CounterVec
	// failureReports counts ReportFailure calls by result (ok, error).
	failureReports *prometheus.CounterVec
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	secs := prometheus.ExponentialBuckets(0.005, 2, 16) // 5 ms .. ~160 s
	m := &metrics{
		reg:         reg,
		stepTime:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "loom_worker_step_seconds", Help: "Wall time of one optimizer step.", Buckets: secs}),
		commWait:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "loom_worker_comm_wait_seconds", Help: "Part of each step spent waiting on collectives.", Buckets: secs}),
		tokensPS:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "loom_worker_tokens_per_second", Help: "Tokens this rank processed per second in the last step."}),
		loss:        prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "loom_worker_loss", Help: "Loss of the last step: term=total, or one loss term (itc, itm, lm, ...)."}, []string{"term"}),
		samples:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "loom_worker_samples_consumed", Help: "Samples of the stage's stream consumed (all ranks) after the last step."}),
		step:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "loom_worker_step", Help: "Global step after the last step."}),
		steps:       prometheus.NewCounter(prometheus.CounterOpts{Name: "loom_worker_steps_total", Help: "Optimizer steps this process ran."}),
		generation:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "loom_worker_generation", Help: "Generation of the job this worker runs (0: idle)."}),
		ckptBlocked: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "loom_worker_checkpoint_blocked_seconds", Help: "Time a checkpoint held up training (state copy).", Buckets: secs}),
		ckptUpload:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "loom_worker_checkpoint_upload_seconds", Help: "Time from the state copy to the last object written.", Buckets: secs}),
		ckptCommit:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "loom_worker_checkpoint_commit_seconds", Help: "Time the coordinator took to commit a checkpoint.", Buckets: secs}),
		ckpts:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loom_worker_checkpoints_total", Help: "Checkpoints by result (committed, skipped, failed)."}, []string{"result"}),
		generations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loom_worker_generations_total", Help: "Generations this worker ran, by how they ended."}, []string{"end"}),
		reports:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loom_worker_progress_reports_total", Help: "Progress reports by result (ok, stale, error)."}, []string{"result"}),
		failureReports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loom_worker_failure_reports_total",
			Help: "Generation failures reported to the coordinator, by result (ok, error)."}, []string{"result"}),
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.stepTime, m.commWait, m.tokensPS, m.loss, m.samples, m.step, m.steps, m.generation,
		m.ckptBlocked, m.ckptUpload, m.ckptCommit, m.ckpts, m.generations, m.reports, m.failureReports)
	return m
}

func (m *metrics) observeStep(p trainer.Progress) {
	m.stepTime.Observe(p.StepTime.Seconds())
	m.commWait.Observe(p.CommWait.Seconds())
	m.tokensPS.Set(p.TokensPerSec)
	m.loss.WithLabelValues("total").Set(p.Loss)
	for k, v := range p.Terms {
		m.loss.WithLabelValues(k).Set(v)
	}
	m.samples.Set(float64(p.Samples))
	m.step.Set(float64(p.Step))
	m.steps.Inc()
}

func (m *metrics) observeCheckpoint(r trainer.CheckpointResult) {
	switch {
	case r.Err != nil:
		m.ckpts.WithLabelValues("failed").Inc()
	case r.Skipped:
		m.ckpts.WithLabelValues("skipped").Inc()
		return
	default:
		m.ckpts.WithLabelValues("committed").Inc()
	}
	m.ckptBlocked.Observe(r.Blocked.Seconds())
	if r.Err == nil {
		m.ckptUpload.Observe(r.Upload.Seconds())
		m.ckptCommit.Observe(r.Commit.Seconds())
	}
}

// health is what /readyz reports.
type health struct {
	registered atomic.Bool
	connected  atomic.Bool
}

func (h *health) ready() (bool, string) {
	switch {
	case !h.registered.Load():
		return false, "not registered in the worker registry"
	case !h.connected.Load():
		return false, "no assignment stream from a coordinator"
	}
	return true, "ok"
}

func handler(m *metrics, h *health) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, why := h.ready()
		if !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, why)
	})
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return mux
}

// generationsEnded returns how many generations ended as end (for tests).
func (m *metrics) generationsEnded(end string) float64 {
	var out dto.Metric
	_ = m.generations.WithLabelValues(end).Write(&out)
	return out.GetCounter().GetValue()
}
