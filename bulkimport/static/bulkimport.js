// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";

  // A menu toggle of the top bar is a link to its menu's landing page; once Bootstrap can open
  // the menu, it is a button that does.
  if (window.bootstrap) {
    document.querySelectorAll("a[data-bs-toggle=dropdown]").forEach(function (toggle) {
      toggle.setAttribute("role", "button");
    });
  }

  // Password forms: one "Show password(s)" checkbox under the password fields shows what was
  // typed. Only the script can do it, so only the script adds it; the fields are password fields
  // again when the form is sent, so that password managers recognise them.
  document.querySelectorAll("form[data-show-passwords]").forEach(function (form, index) {
    var fields = form.querySelectorAll("input[type=password]");
    if (!fields.length) { return; }
    var last = fields[fields.length - 1].closest(".mb-3") || fields[fields.length - 1];
    var wrapper = document.createElement("div");
    wrapper.className = "form-check mb-3";
    var box = document.createElement("input");
    box.type = "checkbox";
    box.className = "form-check-input";
    box.id = "show-passwords-" + index;
    box.setAttribute("aria-controls", Array.prototype.map.call(fields, function (f) {
      return f.id;
    }).join(" "));
    var label = document.createElement("label");
    label.className = "form-check-label";
    label.htmlFor = box.id;
    label.textContent = fields.length > 1 ? "Show passwords" : "Show password";
    wrapper.appendChild(box);
    wrapper.appendChild(label);
    last.parentNode.insertBefore(wrapper, last.nextSibling);
    box.addEventListener("change", function () {
      fields.forEach(function (f) { f.type = box.checked ? "text" : "password"; });
    });
    form.addEventListener("submit", function () {
      fields.forEach(function (f) { f.type = "password"; });
    });
  });

  // Template editor: line numbers beside the HTML and text bodies, so that "text body, line 7"
  // can be found; the lines a problem names are marked. Lines do not wrap, or the numbers would
  // drift from the lines they number.
  document.querySelectorAll("textarea[data-line-numbers]").forEach(function (area) {
    var errors = (area.getAttribute("data-error-lines") || "").split(" ").filter(Boolean);
    var wrapper = document.createElement("div");
    wrapper.className = "code-editor";
    var gutter = document.createElement("div");
    gutter.className = "line-numbers";
    gutter.setAttribute("aria-hidden", "true");  // the problems say the line in words
    area.parentNode.insertBefore(wrapper, area);
    wrapper.appendChild(gutter);
    wrapper.appendChild(area);
    area.setAttribute("wrap", "off");
    var shown = 0;
    function number() {
      var lines = area.value.split("\n").length;
      if (lines !== shown) {
        gutter.textContent = "";
        for (var line = 1; line <= lines; line += 1) {
          var cell = document.createElement("span");
          cell.textContent = line;
          if (errors.indexOf(String(line)) !== -1) { cell.className = "has-problem"; }
          gutter.appendChild(cell);
        }
        shown = lines;
      }
      // A horizontal scroll bar takes room at the bottom of the text, not of the numbers.
      gutter.style.paddingBottom = (area.offsetHeight - area.clientHeight) + "px";
      gutter.scrollTop = area.scrollTop;
    }
    area.addEventListener("input", number);
    area.addEventListener("scroll", function () { gutter.scrollTop = area.scrollTop; });
    if (window.ResizeObserver) { new ResizeObserver(number).observe(area); }
    number();
  });

  // Review page: a ticked column heading selects that action on the visible rows at once
  // (the server applies it to every row of the batch), the "Selected now" counts follow every
  // heading and radio as it changes, a heading shows "some" when only part of its rows are
  // chosen, and the form is told the script ran.
  document.querySelectorAll("form[data-review]").forEach(function (form) {
    var scripted = form.querySelector("input[name=scripted]");
    if (scripted) { scripted.value = "1"; }
    var boxes = {};
    form.querySelectorAll("input[data-select-all]").forEach(function (box) {
      boxes[box.getAttribute("data-select-all")] = box;
    });
    var counts = {};
    var chosen = ["add", "update", "block"];  // what Skip is not (Block: users missing from the file)
    chosen.concat(["skip"]).forEach(function (action) {
      var shown = document.querySelector("[data-selected=" + action + "]");
      counts[action] = shown ? parseInt(shown.textContent, 10) || 0 : 0;
    });
    var total = counts.add + counts.update + counts.block + counts.skip;
    var previous = {};
    function remember() {
      form.querySelectorAll("input[type=radio]:checked").forEach(function (radio) {
        previous[radio.name] = radio.value;
      });
    }
    function show(changed) {
      counts.skip = total - counts.add - counts.update - counts.block;
      document.querySelectorAll("[data-selected]").forEach(function (el) {
        el.textContent = counts[el.getAttribute("data-selected")];
      });
      Object.keys(boxes).forEach(function (action) {
        var applicable = parseInt(boxes[action].getAttribute("data-applicable"), 10) || 0;
        boxes[action].indeterminate = counts[action] > 0 && counts[action] < applicable;
      });
      var hint = document.getElementById("select-hint");
      if (hint && counts.add + counts.update + counts.block > 0) { hint.hidden = true; }
      var note = document.getElementById("unsaved");
      if (note && changed) {
        note.textContent = "Not saved yet: press Submit or Save choices to apply it.";
      }
    }
    remember();
    show(false);
    form.addEventListener("change", function (event) {
      var radio = event.target;
      if (radio.type !== "radio" || !radio.checked) { return; }
      if (previous[radio.name]) { counts[previous[radio.name]] -= 1; }
      counts[radio.value] += 1;
      previous[radio.name] = radio.value;
      show(true);
    });
    Object.keys(boxes).forEach(function (action) {
      var box = boxes[action];
      box.addEventListener("change", function () {
        form.querySelectorAll("input[type=radio][value=" + action + "]").forEach(function (radio) {
          if (box.checked) { radio.checked = true; }
          else if (radio.checked && action !== "skip") {
            var skip = form.querySelector("input[type=radio][name='" + radio.name + "'][value=skip]");
            if (skip) { skip.checked = true; }
          }
        });
        // Add, Update and Block apply to different rows and may all be ticked; Skip excludes
        // them.
        Object.keys(boxes).forEach(function (other) {
          var conflicting = (action === "skip") !== (other === "skip");
          if (other !== action && box.checked && conflicting) { boxes[other].checked = false; }
        });
        var applicable = parseInt(box.getAttribute("data-applicable"), 10) || 0;
        if (action === "skip") {
          if (box.checked) { chosen.forEach(function (other) { counts[other] = 0; }); }
        } else {
          counts[action] = box.checked ? applicable : 0;
        }
        remember();
        show(true);
      });
    });
  });

  // Upload form: say at once that the file is on its way, and keep a second click from
  // sending it twice.
  // The upload form: what the e-mail gives is a choice only while e-mails are sent at all.
  document.querySelectorAll("[data-invite-by]").forEach(function (fieldset) {
    var box = document.getElementById(fieldset.getAttribute("data-invite-by"));
    if (!box) { return; }
    function follow() { fieldset.disabled = !box.checked; }
    box.addEventListener("change", follow);
    follow();
  });

  // The review's invitations form: only the inputs of the chosen "when" are shown.
  document.querySelectorAll("[data-send-when]").forEach(function (form) {
    function follow() {
      var chosen = form.querySelector("input[name=send_when]:checked");
      var when = chosen ? chosen.value : "now";
      form.querySelectorAll("[data-for-when]").forEach(function (input) {
        input.hidden = input.getAttribute("data-for-when") !== when;
      });
    }
    form.querySelectorAll("input[name=send_when]").forEach(function (radio) {
      radio.addEventListener("change", follow);
    });
    follow();
  });

  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    form.addEventListener("submit", function () {
      var button = form.querySelector("[type=submit]");
      var status = form.querySelector("[data-upload-status]");
      if (button) { button.disabled = true; button.value = "Uploading…"; }
      if (status) { status.hidden = false; }
    });
  });

  // Progress bars that move: poll the status URL until the work is finished, then reload.
  document.querySelectorAll("[data-progress-url]").forEach(function (el) {
    var bar = el.querySelector(".progress-bar");
    var label = el.querySelector("[data-progress-label]");
    function poll() {
      fetch(el.getAttribute("data-progress-url"), { headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          var pct = s.status === "applied" ? 100 : s.percent;
          bar.style.width = pct + "%";
          bar.parentNode.setAttribute("aria-valuenow", pct);  // the role="progressbar" element
          bar.textContent = pct + " %";
          if (label) {
            label.textContent = s.label + (s.total ? (el.getAttribute("data-unit") || "") : "");
          }
          document.querySelectorAll("#progress-stages li").forEach(function (item) {
            item.classList.toggle("fw-bold", item.textContent === s.stage);
            item.classList.toggle("text-body", item.textContent === s.stage);
          });
          var finished = (el.getAttribute("data-done-states") || "applied,failed").split(",");
          if (finished.indexOf(s.status) >= 0) { window.location.reload(); }
          else { window.setTimeout(poll, 1000); }
        })
        .catch(function () { window.setTimeout(poll, 3000); });
    }
    poll();
  });

  // Invitation page: counts, bar and time left move until every invitation is handled.
  document.querySelectorAll("[data-invitations-url]").forEach(function (el) {
    var bar = el.querySelector("[data-percent]");
    function poll() {
      fetch(el.getAttribute("data-invitations-url"), { headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          Object.keys(s.counts).forEach(function (key) {
            var cell = el.querySelector("[data-count=" + key + "]");
            if (cell) { cell.textContent = s.counts[key]; }
          });
          bar.style.width = s.percent + "%";
          bar.textContent = s.percent + " %";
          bar.parentNode.setAttribute("aria-valuenow", s.percent);
          el.querySelector("[data-estimate]").textContent = s.estimate;
          // Reload once when the work finishes under our eyes, so that the table shows it.
          if (s.remaining > 0) { running = true; window.setTimeout(poll, 1000); }
          else if (running) { window.location.reload(); }
        })
        .catch(function () { window.setTimeout(poll, 3000); });
    }
    var running = false;
    poll();
  });
})();
