// Enhancements only: the page is complete without this file (server-rendered charts, tables, links).
// Reads each chart's JSON data island; adds values on hover/arrow keys, option toggles and a print button.
"use strict";

(function () {
  var SVG_NS = "http://www.w3.org/2000/svg";

  // Value of a right-continuous step function at t; null past the last time (never extrapolated).
  function stepValue(times, values, t) {
    if (!times.length || t > times[times.length - 1]) return null;
    var lo = 0, hi = times.length - 1;
    while (lo < hi) {
      var mid = (lo + hi + 1) >> 1;
      if (times[mid] <= t) lo = mid; else hi = mid - 1;
    }
    return times[lo] <= t ? values[lo] : 1;
  }

  // As the server writes it (calculator/views.py, pct): never a rounded 0% or 100% that is not.
  function percent(x) {
    if (x === null || x === undefined) return "n.e.";
    var rounded = Math.round(100 * x);
    if (rounded === 0 && x > 0) return "<1%";
    if (rounded === 100 && x < 1) return ">99%";
    return rounded + "%";
  }

  function svgElement(name, attributes) {
    var element = document.createElementNS(SVG_NS, name);
    Object.keys(attributes).forEach(function (key) { element.setAttribute(key, attributes[key]); });
    return element;
  }

  function enhanceChart(figure) {
    var island = figure.querySelector("script.chart-data");
    var svg = figure.querySelector("svg.chart");
    var readout = figure.querySelector(".readout");
    if (!island || !svg || !readout) return;
    var data = JSON.parse(island.textContent);
    var g = data.geometry;
    var options = data.options;  // in the definitions' order (the curves object may arrive with sorted keys)
    var hidden = {};
    var current = null;

    var cursor = svgElement("line", { "class": "cursor is-hidden", y1: g.top, y2: g.bottom, x1: g.left, x2: g.left });
    svg.appendChild(cursor);
    var dots = {};
    options.forEach(function (option, index) {
      // option-<index>: the colour of the option in the stylesheet generated from the definitions.
      dots[option] = svgElement("circle", { "class": "dot is-hidden option-" + index, r: 4, cx: 0, cy: 0 });
      svg.appendChild(dots[option]);
    });

    function xOf(months) { return g.left + (g.right - g.left) * months / g.x_max; }
    function yOf(p) { return g.bottom - (g.bottom - g.top) * p; }

    var start = data.start || 0;  // a conditional prediction's curves begin there (calculator/views.py, chart_data)

    function show(months) {
      current = Math.max(0, Math.min(g.x_max, months));
      var x = xOf(current);
      cursor.setAttribute("x1", x);
      cursor.setAttribute("x2", x);
      cursor.classList.remove("is-hidden");
      if (current < start) {
        options.forEach(function (option) { dots[option].classList.add("is-hidden"); });
        readout.textContent = "At " + Math.round(current) + " months: before the " + start +
          " months already passed without the event (the curves start there)";
        return;
      }
      var parts = [];
      options.forEach(function (option) {
        var c = data.curves[option];
        var s = stepValue(c.times_months, c.survival, current);
        var dot = dots[option];
        if (hidden[option] || s === null) { dot.classList.add("is-hidden"); }
        else {
          dot.setAttribute("cx", x);
          dot.setAttribute("cy", yOf(s));
          dot.classList.remove("is-hidden");
        }
        if (hidden[option]) return;
        parts.push(option + " " + (s === null ? "not estimable" : percent(s) + " (" +
          percent(stepValue(c.times_months, c.ci_lower, current)) + "–" +
          percent(stepValue(c.times_months, c.ci_upper, current)) + ")"));
      });
      readout.textContent = "At " + Math.round(current) + " months: " + parts.join(" · ");
    }

    function hide() {
      cursor.classList.add("is-hidden");
      options.forEach(function (option) { dots[option].classList.add("is-hidden"); });
    }

    svg.addEventListener("pointermove", function (event) {
      var point = svg.createSVGPoint();
      point.x = event.clientX;
      point.y = event.clientY;
      var local = point.matrixTransform(svg.getScreenCTM().inverse());
      show((local.x - g.left) / (g.right - g.left) * g.x_max);
    });
    svg.addEventListener("pointerleave", hide);

    svg.setAttribute("tabindex", "0");
    svg.addEventListener("keydown", function (event) {
      var step = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1, PageUp: 12, PageDown: -12 }[event.key];
      if (event.key === "Home") show(start);
      else if (event.key === "End") show(g.x_max);
      else if (step !== undefined) show((current === null ? Math.ceil(start) : Math.round(current)) + step);
      else return;
      event.preventDefault();
    });
    svg.addEventListener("blur", hide);

    // The server renders the legend as a list; toggles make sense only with this script, so it makes them here.
    figure.querySelectorAll(".legend li[data-option]").forEach(function (item) {
      var option = item.getAttribute("data-option");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "legend-toggle";
      button.setAttribute("aria-pressed", "true");
      while (item.firstChild) button.appendChild(item.firstChild);
      item.appendChild(button);
      button.addEventListener("click", function () {
        hidden[option] = !hidden[option];
        button.setAttribute("aria-pressed", String(!hidden[option]));
        figure.querySelectorAll('svg.chart [data-option="' + option + '"]').forEach(function (element) {
          element.classList.toggle("is-hidden", hidden[option]);
        });
        if (current !== null) show(current);
      });
    });

    var hint = figure.querySelector(".chart-hint");
    if (hint) hint.hidden = false;
  }

  function addPrintButton() {
    document.querySelectorAll(".actions").forEach(function (actions) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = "Print handout";
      button.addEventListener("click", function () { window.print(); });
      actions.appendChild(button);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("figure.chart-figure").forEach(enhanceChart);
    addPrintButton();
  });
})();
