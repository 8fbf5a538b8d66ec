package api

import "container/list"

// lru is a bounded map that remembers the order of use. Whether a full map
// may forget its least recently used entry to take a new one is the
// caller's to say: forgetting a rate limit's state relaxes the limit, so a
// table an attacker can fill must refuse new keys rather than forget hot
// ones. Not safe for concurrent use.
type lru[V any] struct {
	max int
	ll  *list.List // of *lruEntry[V], most recently used first
	m   map[string]*list.Element
}

type lruEntry[V any] struct {
	key string
	val V
}

func newLRU[V any](maxKeys int) *lru[V] {
	return &lru[V]{max: max(maxKeys, 1), ll: list.New(), m: map[string]*list.Element{}}
}

// get returns key's value and marks it used.
func (l *lru[V]) get(key string) (V, bool) {
	el, ok := l.m[key]
	if !ok {
		var zero V
		return zero, false
	}
	l.ll.MoveToFront(el)
	return el.Value.(*lruEntry[V]).val, true
}

// add stores v under key (replacing any value). When the map is full, the
// least recently used entry is dropped if forgettable says it may be;
// otherwise nothing changes and add reports false.
func (l *lru[V]) add(key string, v V, forgettable func(V) bool) bool {
	if el, ok := l.m[key]; ok {
		el.Value.(*lruEntry[V]).val = v
		l.ll.MoveToFront(el)
		return true
	}
	if l.ll.Len() >= l.max {
		old := l.ll.Back()
		e := old.Value.(*lruEntry[V])
		if !forgettable(e.val) {
			return false
		}
		l.ll.Remove(old)
		delete(l.m, e.key)
	}
	l.m[key] = l.ll.PushFront(&lruEntry[V]{key: key, val: v})
	return true
}

func (l *lru[V]) remove(key string) {
	if el, ok := l.m[key]; ok {
		l.ll.Remove(el)
		delete(l.m, key)
	}
}

func (l *lru[V]) len() int { return l.ll.Len() }

// always lets a full lru forget its oldest entry.
func always[V any](V) bool { return true }
