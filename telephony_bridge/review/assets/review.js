// telephony-bridge call review: draws the two channels and the lanes on one time axis, keeps a
// playhead on the audio, and seeks the audio when a transcript line, an event or the waveform is
// clicked. Plain JS, no libraries; the page's data is the JSON in #call-data.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("call-data").textContent);
  var audio = document.getElementById("audio");
  var scroller = document.getElementById("scroller");
  var track = document.getElementById("track");
  var zoomInput = document.getElementById("zoom");
  var timeLabel = document.getElementById("time");
  var duration = Math.max(data.duration || 0, 1);
  var pxPerS = 0;

  function decode(b64) {
    if (!b64) return new Uint8Array(0);
    var s = atob(b64), out = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  var levels = { left: decode(data.levels.left), right: decode(data.levels.right) };

  function fmt(t) {
    t = Math.max(0, t);
    var m = Math.floor(t / 60), s = t - m * 60;
    return m + ":" + (s < 10 ? "0" : "") + s.toFixed(1);
  }

  function fitPx() {
    var w = scroller.clientWidth || 1000;
    return Math.max(20, w / duration);
  }

  function drawWave(canvas, values, color) {
    var width = Math.ceil(duration * pxPerS);
    var ratio = window.devicePixelRatio || 1;
    canvas.style.width = width + "px";
    canvas.width = Math.min(32000, Math.ceil(width * ratio));
    canvas.height = Math.ceil(64 * ratio);
    var ctx = canvas.getContext("2d");
    var sx = canvas.width / width;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    var mid = canvas.height / 2;
    ctx.fillStyle = "#eef1f5";
    ctx.fillRect(0, mid - 0.5 * ratio, canvas.width, ratio);
    ctx.fillStyle = color;
    var frameS = data.frame_s, n = values.length;
    var step = Math.max(1, Math.floor(n / canvas.width));
    for (var i = 0; i < n; i += step) {
      var v = 0;
      for (var j = i; j < i + step && j < n; j++) if (values[j] > v) v = values[j];
      if (!v) continue;
      var h = Math.max(ratio, (v / 255) * (canvas.height - 4));
      var x = i * frameS * pxPerS * sx;
      ctx.fillRect(x, mid - h / 2, Math.max(ratio, step * frameS * pxPerS * sx), h);
    }
  }

  function drawAxis() {
    var axis = document.getElementById("axis");
    axis.innerHTML = "";
    axis.style.width = Math.ceil(duration * pxPerS) + "px";
    var every = [1, 2, 5, 10, 15, 30, 60, 120, 300].find(function (s) { return s * pxPerS >= 70; }) || 600;
    for (var t = 0; t <= duration; t += every) {
      var s = document.createElement("span");
      s.style.left = (t * pxPerS) + "px";
      if (t === 0) s.style.transform = "none";
      s.textContent = fmt(t).replace(/\.0$/, "");
      axis.appendChild(s);
    }
  }

  function placeLanes() {
    var lanes = document.querySelectorAll(".lane");
    lanes.forEach(function (lane) {
      lane.style.width = Math.ceil(duration * pxPerS) + "px";
      lane.querySelectorAll(".ev").forEach(function (el) {
        var t0 = parseFloat(el.dataset.t0), t1 = el.dataset.t1 === "" ? null : parseFloat(el.dataset.t1);
        el.style.left = (t0 * pxPerS) + "px";
        if (t1 !== null) el.style.width = Math.max(3, (t1 - t0) * pxPerS) + "px";
      });
    });
  }

  function buildLanes() {
    var labels = document.getElementById("labels");
    data.lanes.forEach(function (lane) {
      var label = document.createElement("div");
      label.className = "lane-label";
      label.textContent = lane.title + " (" + lane.events.length + ")";
      labels.appendChild(label);
      var row = document.createElement("div");
      row.className = "lane";
      row.dataset.lane = lane.name;
      lane.events.forEach(function (ev) {
        var el = document.createElement("div");
        el.className = "ev " + ev.kind + (ev.t1 === null ? " instant" : "");
        el.dataset.t0 = ev.t0;
        el.dataset.t1 = ev.t1 === null ? "" : ev.t1;
        el.title = fmt(ev.t0) + (ev.t1 === null ? "" : "–" + fmt(ev.t1)) + "  " + ev.label;
        if (ev.t1 === null) {
          var tag = document.createElement("span");
          tag.textContent = ev.label;
          el.appendChild(tag);
        } else {
          el.textContent = ev.label;
        }
        el.addEventListener("click", function () { seek(ev.t0); });
        row.appendChild(el);
      });
      track.appendChild(row);
    });
  }

  function layout() {
    pxPerS = fitPx() * parseFloat(zoomInput.value || "1");
    drawWave(document.getElementById("wave-left"), levels.left, "#2e7dd7");
    drawWave(document.getElementById("wave-right"), levels.right, "#d9641e");
    drawAxis();
    placeLanes();
    tick();
  }

  function seek(t) {
    if (!audio) return;
    audio.currentTime = Math.max(0, t);
    var p = audio.play();
    if (p && p.catch) p.catch(function () {});
    tick();
  }

  var lines = Array.prototype.slice.call(document.querySelectorAll(".line"));
  lines.forEach(function (line) {
    line.addEventListener("click", function () { seek(parseFloat(line.dataset.t)); });
    line.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); seek(parseFloat(line.dataset.t)); }
    });
  });

  var playhead = document.getElementById("playhead");
  function tick() {
    var t = audio ? audio.currentTime : 0;
    playhead.style.left = (t * pxPerS) + "px";
    timeLabel.textContent = fmt(t) + " / " + fmt(duration);
    var current = null;
    lines.forEach(function (line) { if (parseFloat(line.dataset.t) <= t + 0.05) current = line; });
    lines.forEach(function (line) { line.classList.toggle("now", line === current); });
    if (audio && !audio.paused) {
      var x = t * pxPerS;
      if (x < scroller.scrollLeft || x > scroller.scrollLeft + scroller.clientWidth - 40) scroller.scrollLeft = x - 60;
    }
  }

  ["wave-left", "wave-right"].forEach(function (id) {
    document.getElementById(id).addEventListener("click", function (e) {
      var rect = e.target.getBoundingClientRect();
      seek((e.clientX - rect.left) / pxPerS);
    });
  });
  if (audio) {
    audio.addEventListener("timeupdate", tick);
    audio.addEventListener("seeked", tick);
  }
  zoomInput.addEventListener("input", layout);
  window.addEventListener("resize", layout);
  buildLanes();
  layout();
  (function loop() { if (audio && !audio.paused) tick(); window.requestAnimationFrame(loop); })();
  window.__review = { seek: seek, data: data };
})();
