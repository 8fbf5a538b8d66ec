package main

import (
	"reflect"
	"testing"
)

// TestChatTextsComplete: every language in chattext.json says every text,
// and an unknown language gets English.
func TestChatTextsComplete(t *testing.T) {
	for _, lang := range []string{"en", "nb", "nn"} {
		if _, ok := chatTexts[lang]; !ok {
			t.Fatalf("chattext.json has no %q", lang)
		}
	}
	for lang, tx := range chatTexts {
		v := reflect.ValueOf(tx)
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if f.IsExported() && v.Field(i).String() == "" {
				t.Errorf("chattext.json %s: %s is empty", lang, f.Name)
			}
		}
	}
	if got := chatTextFor("xx"); got.Intro != chatTexts["en"].Intro || got.lang != "xx" {
		t.Errorf("chatTextFor(xx) = %q (lang %q), want English with lang xx", got.Intro, got.lang)
	}
}
