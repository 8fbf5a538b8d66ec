package main

// page is the lab's browser side: it sends the fake microphone (the WAV the
// browser was started with) to the Go peer and captures the samples of the
// remote track with MediaStreamTrackProcessor, which needs no audio output
// (headless Chromium has none, and chromedp mutes it).
const page = `<!doctype html><meta charset="utf-8"><title>webrtc lab</title>
<script>
window.chunks = []; window.recording = true; window.rate = 0; window.rates = {}; window.frames = 0; window.log = [];
window.gaps = {n: 0, us: 0, maxUs: 0, next: null};
async function iceDone(pc) {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise(r => pc.addEventListener('icegatheringstatechange',
    () => { if (pc.iceGatheringState === 'complete') r(); }));
}
async function capture(track) {
  const p = new MediaStreamTrackProcessor({track});
  const rd = p.readable.getReader();
  for (;;) {
    const {value, done} = await rd.read();
    if (done) break;
    // The rate changes within one track: 48 kHz silence until RTP
    // arrives, then the decoder's rate (8 kHz for PCMU). Bring every
    // chunk to 8 kHz here (a box average; envelopes need no better).
    // AudioData.timestamp (µs): a chunk that does not start where the
    // previous one ended means chunks were dropped (the reader was late).
    const g = window.gaps;
    if (g.next !== null && value.timestamp - g.next > 1000) {
      const d = value.timestamp - g.next;
      g.n++; g.us += d; g.maxUs = Math.max(g.maxUs, d);
    }
    g.next = value.timestamp + value.duration;
    const rate = value.sampleRate;
    window.rates[rate] = (window.rates[rate] || 0) + 1;
    const raw = new Float32Array(value.numberOfFrames);
    value.copyTo(raw, {planeIndex: 0, format: 'f32-planar'});
    value.close();
    const k = rate / 8000, buf = new Float32Array(Math.floor(raw.length / k));
    for (let i = 0; i < buf.length; i++) {
      let sum = 0, lo = Math.floor(i * k), hi = Math.floor((i + 1) * k);
      for (let j = lo; j < hi; j++) sum += raw[j];
      buf[i] = sum / (hi - lo);
    }
    window.rate = 8000;
    if (window.recording) { window.chunks.push(buf); window.frames += buf.length; }
  }
}
// samples returns what was captured as base64 of little-endian float32.
function samples() {
  const all = new Float32Array(window.frames);
  let o = 0; for (const c of window.chunks) { all.set(c, o); o += c.length; }
  const u8 = new Uint8Array(all.buffer); let s = '';
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
  return btoa(s);
}
// inbound is the receiver's inbound-rtp stats: NetEq's concealment and
// time-stretching, and its mean jitter-buffer delay.
async function inbound() {
  const out = {};
  (await window.pc.getStats()).forEach(r => {
    if (r.type !== 'inbound-rtp' || r.kind !== 'audio') return;
    for (const k of ['packetsReceived', 'packetsLost', 'jitter', 'totalSamplesReceived', 'concealedSamples',
      'silentConcealedSamples', 'concealmentEvents', 'insertedSamplesForDeceleration',
      'removedSamplesForAcceleration', 'jitterBufferDelay', 'jitterBufferEmittedCount',
      'jitterBufferTargetDelay']) out[k] = r[k];
    out.meanJitterBufferMs = 1000 * r.jitterBufferDelay / r.jitterBufferEmittedCount;
  });
  return out;
}
async function start(attach, processing) {
  window.attach = attach;
  const audio = processing === 'on' ? true : {
    echoCancellation: false, noiseSuppression: false, autoGainControl: false};
  const stream = await navigator.mediaDevices.getUserMedia({audio});
  window.settings = stream.getAudioTracks()[0].getSettings();
  const pc = new RTCPeerConnection({iceServers: []});
  window.pc = pc;
  pc.ontrack = e => {
    if (window.attach) { const a = new Audio(); a.srcObject = new MediaStream([e.track]); a.muted = window.attach === 'muted'; window.audioEl = a; a.play().then(() => window.log.push('playing'), err => window.log.push('play: ' + err)); }
    window.log.push('ontrack ' + e.track.kind + ' ' + typeof MediaStreamTrackProcessor); capture(e.track).catch(err => window.log.push('capture: ' + err)); };
  stream.getTracks().forEach(t => pc.addTrack(t, stream));
  await pc.setLocalDescription(await pc.createOffer());
  await iceDone(pc);
  const r = await fetch('/offer', {method: 'POST', body: JSON.stringify(pc.localDescription)});
  await pc.setRemoteDescription(await r.json());
  return pc.localDescription.sdp;
}
</script>`
