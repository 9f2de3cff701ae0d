package main

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/lazyfs/lazyfs/cache"
	"github.com/lazyfs/lazyfs/config"
)

// evictInterval is how often the snapshotter brings the chunk cache back
// within its budget. A pass walks the cache (about a second per million
// chunk files); between passes the cache may exceed its budget by what the
// workers fetched meanwhile.
const evictInterval = 10 * time.Second

// startCacheEvictor creates the chunk cache's directories and keeps the
// cache within cfg.Cache.Size until the returned stop is called. The
// snapshotter is the only process that evicts; workers only read and write.
// The evictor also knows each layer's cached bytes, for Usage; it is nil
// when the disk cache is off.
func startCacheEvictor(ctx context.Context, cfg config.Config) (_ *cache.Evictor, stop func(), err error) {
	if cfg.Cache.Size == 0 {
		return nil, func() {}, nil
	}
	dir := cfg.CacheDir()
	store, err := cache.Open(ctx, dir, cache.Options{})
	if err != nil {
		return nil, nil, err
	}
	store.Close() // only its directories were wanted: the workers write
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("cache_dir", dir))
	ctx, cancel := context.WithCancel(ctx)
	ev := cache.NewEvictor(dir, int64(cfg.Cache.Size))
	var wg sync.WaitGroup
	wg.Go(func() { ev.Run(ctx, evictInterval) })
	log.G(ctx).WithField("budget_bytes", int64(cfg.Cache.Size)).Info("chunk cache enabled")
	return ev, func() {
		cancel()
		wg.Wait()
	}, nil
}
