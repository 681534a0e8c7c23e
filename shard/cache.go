package shard

import "container/list"

// lru is a least-recently-used cache bounded by the sum of its entries'
// costs (bytes). It is not safe for concurrent use; Reader guards it.
type lru[K comparable, V any] struct {
	limit int64
	used  int64
	ll    *list.List
	items map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key  K
	val  V
	cost int64
}

func newLRU[K comparable, V any](limit int64) *lru[K, V] {
	return &lru[K, V]{limit: limit, ll: list.New(), items: map[K]*list.Element{}}
}

// get returns the value and marks it most recently used.
func (c *lru[K, V]) get(k K) (V, bool) {
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruEntry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// add inserts or replaces k, then evicts least recently used entries until
// the total cost is within the limit. An entry costlier than the limit is
// not kept.
func (c *lru[K, V]) add(k K, v V, cost int64) {
	if e, ok := c.items[k]; ok {
		c.used -= e.Value.(*lruEntry[K, V]).cost
		c.ll.Remove(e)
		delete(c.items, k)
	}
	if cost > c.limit {
		return
	}
	c.items[k] = c.ll.PushFront(&lruEntry[K, V]{key: k, val: v, cost: cost})
	c.used += cost
	for c.used > c.limit {
		e := c.ll.Back()
		ent := e.Value.(*lruEntry[K, V])
		c.ll.Remove(e)
		delete(c.items, ent.key)
		c.used -= ent.cost
	}
}

// demote marks k (if present) least recently used: it is evicted first.
func (c *lru[K, V]) demote(k K) {
	if e, ok := c.items[k]; ok {
		c.ll.MoveToBack(e)
	}
}

func (c *lru[K, V]) len() int { return c.ll.Len() }
