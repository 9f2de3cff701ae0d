package chunks

import (
	"context"
	"sync"
	"time"

	"github.com/lazyfs/lazyfs/metrics"
)

// Priority is the class of a range request to a registry.
type Priority int

const (
	// Foreground is a read a container waits on.
	Foreground Priority = iota
	// Prefetch is the prioritized files of a layer fetched at mount, and
	// the next chunks of a file read sequentially.
	Prefetch
	// Background is the lowest class: filling the cache with whole layers
	// (the layer-proof pass), paced by SchedulerOptions.BackgroundRate.
	Background
	numPriorities
)

var priorityNames = [numPriorities]string{Foreground: "foreground", Prefetch: "prefetch", Background: "background"}

func (p Priority) String() string {
	if p < 0 || p >= numPriorities {
		return "unknown"
	}
	return priorityNames[p]
}

// Defaults of SchedulerOptions.
const (
	DefaultConcurrency           = 8
	DefaultBackgroundConcurrency = 2
)

// SchedulerOptions configures a Scheduler.
type SchedulerOptions struct {
	// Concurrency bounds the range requests in flight to one registry.
	// Foreground requests have that many slots of their own; prefetch and
	// background requests share as many, and take one only while fewer
	// than Concurrency requests of any class are in flight and no
	// foreground request waits. So a read a container waits on never
	// queues behind prefetch or background work (at most 2×Concurrency
	// requests are in flight to a registry). Zero means the default.
	Concurrency int
	// BackgroundConcurrency bounds the background requests in flight to
	// one registry (within the shared slots). Zero means the default.
	BackgroundConcurrency int
	// BackgroundRate bounds the compressed bytes per second background
	// requests ask of one registry; zero or less means no bound.
	BackgroundRate int64
}

// Scheduler orders the range requests of a worker's layers by priority
// under a per-registry concurrency limit. The zero value is not usable; a
// nil *Scheduler admits every request at once. It is safe for concurrent
// use; the Readers of a worker share one.
type Scheduler struct {
	opts SchedulerOptions

	mu   sync.Mutex
	regs map[string]*registrySlots
}

// registrySlots is one registry's requests in flight and waiting.
type registrySlots struct {
	inFlight [numPriorities]int
	waiting  [numPriorities][]*slotWaiter
	// nextBackground is when the next background request may start
	// (pacing by BackgroundRate).
	nextBackground time.Time
	// lastForeground is when the last foreground request, or read
	// marked by ReadStarted, ended (YieldToForeground).
	lastForeground time.Time
	// reading counts the reads marked by ReadStarted now.
	reading int
}

type slotWaiter struct {
	class   Priority
	queued  time.Time
	granted chan struct{} // closed when the slot is the waiter's
}

// NewScheduler returns a Scheduler.
func NewScheduler(opts SchedulerOptions) *Scheduler {
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.BackgroundConcurrency <= 0 {
		opts.BackgroundConcurrency = DefaultBackgroundConcurrency
	}
	return &Scheduler{opts: opts, regs: map[string]*registrySlots{}}
}

// Lift raises a request still waiting for its slot to Foreground: a read
// that waits for a chunk that prefetch claimed must not wait behind
// other prefetches. The zero value is never raised; Raise is idempotent.
type Lift struct {
	once sync.Once
	ch   chan struct{}
}

// NewLift returns a Lift to pass to Acquire.
func NewLift() *Lift { return &Lift{ch: make(chan struct{})} }

// Raise raises the requests the Lift was given to.
func (l *Lift) Raise() {
	if l == nil || l.ch == nil {
		return
	}
	l.once.Do(func() { close(l.ch) })
}

func (l *Lift) raised() <-chan struct{} {
	if l == nil {
		return nil
	}
	return l.ch
}

// Acquire waits for a slot to send a request of size compressed bytes to
// registry and returns the function that gives it back, which must be
// called once the request is done. A Background request is first paced by
// BackgroundRate. lift, if not nil, raises the request to Foreground while
// it waits. On error (ctx ended) no slot is held.
func (s *Scheduler) Acquire(ctx context.Context, registry string, class Priority, size int64, lift *Lift) (func(), error) {
	if s == nil {
		return func() {}, nil
	}
	select {
	case <-lift.raised():
		class = Foreground
	default:
	}
	if class == Background && s.opts.BackgroundRate > 0 {
		if err := s.pace(ctx, registry, size, lift); err != nil {
			return nil, err
		}
		select {
		case <-lift.raised():
			class = Foreground
		default:
		}
	}
	s.mu.Lock()
	q := s.slots(registry)
	if len(q.waiting[class]) == 0 && s.admits(q, class) {
		q.inFlight[class]++
		s.mu.Unlock()
		metrics.FetchesInFlight.WithLabelValues(class.String()).Inc()
		metrics.FetchWait.WithLabelValues(class.String()).Observe(0)
		return s.releaser(registry, class), nil
	}
	w := &slotWaiter{class: class, queued: time.Now(), granted: make(chan struct{})}
	q.waiting[class] = append(q.waiting[class], w)
	metrics.FetchQueueLength.WithLabelValues(class.String()).Inc()
	s.mu.Unlock()

	raised := lift.raised()
	for {
		select {
		case <-w.granted:
			return s.releaser(registry, w.class), nil
		case <-raised:
			raised = nil
			s.mu.Lock()
			if s.dequeue(q, w) {
				metrics.FetchQueueLength.WithLabelValues(w.class.String()).Dec()
				w.class = Foreground
				q.waiting[Foreground] = append(q.waiting[Foreground], w)
				metrics.FetchQueueLength.WithLabelValues(Foreground.String()).Inc()
				s.dispatch(q)
			}
			s.mu.Unlock()
		case <-ctx.Done():
			s.mu.Lock()
			if s.dequeue(q, w) {
				metrics.FetchQueueLength.WithLabelValues(w.class.String()).Dec()
				s.mu.Unlock()
				return nil, ctx.Err()
			}
			s.mu.Unlock()
			// Granted meanwhile: give the slot back.
			<-w.granted
			s.releaser(registry, w.class)()
			return nil, ctx.Err()
		}
	}
}

// pace waits until a background request of size bytes fits the registry's
// BackgroundRate, reserving its share of it.
func (s *Scheduler) pace(ctx context.Context, registry string, size int64, lift *Lift) error {
	s.mu.Lock()
	q := s.slots(registry)
	now := time.Now()
	start := q.nextBackground
	if start.Before(now) {
		start = now
	}
	q.nextBackground = start.Add(time.Duration(float64(size) / float64(s.opts.BackgroundRate) * float64(time.Second)))
	s.mu.Unlock()
	if !start.After(now) {
		return nil
	}
	t := time.NewTimer(start.Sub(now))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-lift.raised():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// slots returns registry's state. It runs under s.mu.
func (s *Scheduler) slots(registry string) *registrySlots {
	q, ok := s.regs[registry]
	if !ok {
		q = &registrySlots{}
		s.regs[registry] = q
	}
	return q
}

// admits reports whether a request of class may start now. It runs under
// s.mu.
func (s *Scheduler) admits(q *registrySlots, class Priority) bool {
	c := s.opts.Concurrency
	if class == Foreground {
		return q.inFlight[Foreground] < c
	}
	if len(q.waiting[Foreground]) > 0 || q.inFlight[Foreground]+q.inFlight[Prefetch]+q.inFlight[Background] >= c {
		return false
	}
	if class == Background {
		return len(q.waiting[Prefetch]) == 0 && q.inFlight[Background] < s.opts.BackgroundConcurrency
	}
	return true
}

// dispatch grants slots to waiters, highest class first. It runs under s.mu.
func (s *Scheduler) dispatch(q *registrySlots) {
	for class := Foreground; class < numPriorities; class++ {
		for len(q.waiting[class]) > 0 && s.admits(q, class) {
			w := q.waiting[class][0]
			q.waiting[class] = q.waiting[class][1:]
			q.inFlight[class]++
			name := class.String()
			metrics.FetchQueueLength.WithLabelValues(name).Dec()
			metrics.FetchesInFlight.WithLabelValues(name).Inc()
			metrics.FetchWait.WithLabelValues(name).Observe(time.Since(w.queued).Seconds())
			close(w.granted)
		}
	}
}

// dequeue removes w from its queue and reports whether it was still
// waiting (not granted). It runs under s.mu.
func (s *Scheduler) dequeue(q *registrySlots, w *slotWaiter) bool {
	list := q.waiting[w.class]
	for i, x := range list {
		if x == w {
			q.waiting[w.class] = append(list[:i:i], list[i+1:]...)
			return true
		}
	}
	return false
}

func (s *Scheduler) releaser(registry string, class Priority) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			q := s.slots(registry)
			q.inFlight[class]--
			if class == Foreground {
				q.lastForeground = time.Now()
			}
			metrics.FetchesInFlight.WithLabelValues(class.String()).Dec()
			s.dispatch(q)
			s.mu.Unlock()
		})
	}
}

func init() {
	// Every class's series exist from the start, at zero: an operator
	// sees "no queue" rather than no series.
	for class := Foreground; class < numPriorities; class++ {
		name := class.String()
		metrics.FetchQueueLength.WithLabelValues(name)
		metrics.FetchesInFlight.WithLabelValues(name)
		metrics.FetchWait.WithLabelValues(name)
	}
}
