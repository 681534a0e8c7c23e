package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var (
	mu     sync.Mutex
	shared context.Context
	stop   context.CancelFunc
)

// Chromium returns the browser's path: it skips t without one, except in
// CI (CI=true), where a missing browser fails it.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed; CI must install it (.ci/run: apt-get install chromium)")
	}
	t.Skip("chromium is not installed (Debian: apt-get install chromium); the browser tests need it")
	return ""
}

// Tab returns a new tab of the test binary's headless chromium (started
// on first use), bounded by timeout and closed when the test ends.
func Tab(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	path := Chromium(t)
	mu.Lock()
	if shared == nil {
		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
			chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 1800))
		actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, cancelB := chromedp.NewContext(actx)
		if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
			cancelB()
			cancelA()
			mu.Unlock()
			t.Fatalf("starting chromium %s: %v", path, err)
		}
		shared, stop = bctx, func() { cancelB(); cancelA() }
	}
	parent := shared
	mu.Unlock()
	tab, cancelTab := chromedp.NewContext(parent)
	ctx, cancel := context.WithTimeout(tab, timeout)
	t.Cleanup(func() { cancel(); cancelTab() })
	return ctx
}

// Close stops the browser; call it from TestMain after m.Run.
func Close() {
	mu.Lock()
	defer mu.Unlock()
	if stop != nil {
		stop()
		shared, stop = nil, nil
	}
}

// Text waits until the first element matching the CSS selector is visible
// and returns its text.
func Text(ctx context.Context, sel string) (string, error) {
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		return "", fmt.Errorf("waiting for %s: %w", sel, err)
	}
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		return "", fmt.Errorf("text of %s: %w", sel, err)
	}
	return s, nil
}

// Attr waits until the first element matching the CSS selector is in the
// page and returns its attribute name.
func Attr(ctx context.Context, sel, name string) (string, error) {
	if err := chromedp.Do(ctx, chromedp.WaitReady(chromedp.CSS(sel))); err != nil {
		return "", fmt.Errorf("waiting for %s: %w", sel, err)
	}
	r, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
	if err != nil {
		return "", fmt.Errorf("%s[%s]: %w", sel, name, err)
	}
	if !r.Exists {
		return "", fmt.Errorf("%s has no attribute %s", sel, name)
	}
	return r.Value, nil
}

// Navigate opens u in the tab.
func Navigate(t testing.TB, ctx context.Context, u string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("navigate to %s: %v", u, err)
	}
}
