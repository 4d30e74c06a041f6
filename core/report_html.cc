#include "core/report_html.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/arch_params.h"
#include "core/architecture.h"
#include "core/json_fields.h"
#include "core/search_space.h"
#include "core/status_macros.h"

namespace nas {
namespace {

// ---------------------------------------------------------------------------------------------
// Text

std::string Esc(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        // Control characters are not XML; show them as spaces.
        out += (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') ? ' ' : c;
    }
  }
  return out;
}

std::string Num(double v) {
  if (!std::isfinite(v)) return "-";
  return absl::StrFormat("%.4g", v);
}
std::string Px(double v) { return absl::StrFormat("%.1f", v); }
std::string Pct(double v) { return std::isfinite(v) ? absl::StrFormat("%.2f%%", 100 * v) : "-"; }

// A fixed palette: candidates of a space get colours in the order of the space's candidate
// list (kernel-major), Zero is grey.
const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                          "#e377c2", "#17becf", "#bcbd22", "#393b79", "#637939", "#8c6d31"};
constexpr const char* kZeroColour = "#9e9e9e";

// A candidate's colour by its name (the same name has the same colour on every edge).
class Palette {
 public:
  explicit Palette(const SearchSpace& space) {
    for (const EdgeSpec& e : space.edges()) {
      for (const Candidate& c : e.candidates) {
        std::string n = c.Name();
        if (c.zero || index_.count(n) > 0) continue;
        index_[n] = static_cast<int>(order_.size());
        order_.push_back(n);
      }
      for (const Candidate& c : e.candidates) has_zero_ = has_zero_ || c.zero;
    }
  }
  std::string Of(const Candidate& c) const {
    if (c.zero) return kZeroColour;
    auto it = index_.find(c.Name());
    int i = it == index_.end() ? 0 : it->second;
    return kPalette[i % (sizeof(kPalette) / sizeof(kPalette[0]))];
  }
  const std::vector<std::string>& names() const { return order_; }
  bool has_zero() const { return has_zero_; }

 private:
  std::map<std::string, int> index_;
  std::vector<std::string> order_;
  bool has_zero_ = false;
};

// ---------------------------------------------------------------------------------------------
// Inputs

struct HistoryPoint {
  std::string phase;
  double loss = std::numeric_limits<double>::quiet_NaN();
  double accuracy = std::numeric_limits<double>::quiet_NaN();
  double expected_ms = std::numeric_limits<double>::quiet_NaN();
  std::vector<std::vector<double>> probs;  // per edge
};

absl::StatusOr<std::vector<HistoryPoint>> ParseHistory(const std::vector<std::string>& lines,
                                                       const SearchSpace& space,
                                                       const ReportHtmlOptions& o) {
  if (lines.size() > o.max_history_lines) {
    return absl::InvalidArgumentError(absl::StrCat("alpha_history.jsonl: ", lines.size(),
                                                   " lines, more than the limit of ",
                                                   o.max_history_lines));
  }
  std::vector<int> sizes = space.CandidatesPerEdge();
  std::vector<HistoryPoint> out;
  out.reserve(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    const std::string where = absl::StrCat("alpha_history.jsonl line ", i + 1);
    NAS_ASSIGN_OR_RETURN(Json j, ParseJson(lines[i], where));
    if (!j.is_object()) return absl::InvalidArgumentError(where + ": not a JSON object");
    HistoryPoint p;
    NAS_ASSIGN_OR_RETURN(p.phase, GetString(j, where, "phase"));
    NAS_ASSIGN_OR_RETURN(p.loss, GetDoubleOr(j, where, "loss", p.loss));
    NAS_ASSIGN_OR_RETURN(p.accuracy, GetDoubleOr(j, where, "accuracy", p.accuracy));
    NAS_ASSIGN_OR_RETURN(p.expected_ms,
                         GetDoubleOr(j, where, "expected_latency_ms", p.expected_ms));
    NAS_ASSIGN_OR_RETURN(const Json* alpha, GetMember(j, where, "alpha"));
    if (!alpha->is_array() || alpha->size() != sizes.size()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".alpha: expected ", sizes.size(),
                                                     " edges of space ", space.name()));
    }
    for (size_t e = 0; e < sizes.size(); ++e) {
      const Json& row = (*alpha)[e];
      if (!row.is_array() || row.size() != static_cast<size_t>(sizes[e])) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".alpha[", e, "]: expected ",
                                                       sizes[e], " numbers"));
      }
      std::vector<double> a;
      for (const Json& v : row) {
        if (!v.is_number() || !std::isfinite(v.get<double>())) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ".alpha[", e, "]: not a finite number"));
        }
        a.push_back(v.get<double>());
      }
      p.probs.push_back(Softmax(a));
    }
    out.push_back(std::move(p));
  }
  return out;
}

struct NetworkFacts {
  bool present = false;
  double test_accuracy = std::numeric_limits<double>::quiet_NaN();
  double predicted_ms = std::numeric_limits<double>::quiet_NaN();
  double measured_ms = std::numeric_limits<double>::quiet_NaN();
  double measured_std_ms = std::numeric_limits<double>::quiet_NaN();
  double parameters = std::numeric_limits<double>::quiet_NaN();
  std::string architecture;
};

absl::StatusOr<NetworkFacts> ParseNetwork(const Json& report, const std::string& label) {
  NetworkFacts n;
  if (!report.contains(label)) return n;
  const Json& j = report[label];
  const std::string where = "report.json." + label;
  if (!j.is_object()) return absl::InvalidArgumentError(where + ": not an object");
  n.present = true;
  NAS_ASSIGN_OR_RETURN(n.test_accuracy, GetDoubleOr(j, where, "test_accuracy", n.test_accuracy));
  NAS_ASSIGN_OR_RETURN(n.predicted_ms,
                       GetDoubleOr(j, where, "predicted_latency_ms", n.predicted_ms));
  NAS_ASSIGN_OR_RETURN(n.measured_ms, GetDoubleOr(j, where, "measured_latency_ms", n.measured_ms));
  NAS_ASSIGN_OR_RETURN(n.measured_std_ms,
                       GetDoubleOr(j, where, "measured_latency_std_ms", n.measured_std_ms));
  NAS_ASSIGN_OR_RETURN(n.parameters, GetDoubleOr(j, where, "parameters", n.parameters));
  NAS_ASSIGN_OR_RETURN(n.architecture, GetStringOr(j, where, "architecture", ""));
  return n;
}

struct PathPoint {
  std::string source;  // derived, baseline, alpha, uniform
  std::vector<int> choices;
  double latency_ms = 0;
  double accuracy = 0;
};

absl::StatusOr<std::vector<PathPoint>> ParsePaths(const Json& report, const SearchSpace& space,
                                                  std::string* note) {
  std::vector<PathPoint> out;
  if (!report.contains("sampled_paths")) return out;
  const std::string where = "report.json.sampled_paths";
  const Json& sp = report["sampled_paths"];
  if (!sp.is_object()) return absl::InvalidArgumentError(where + ": not an object");
  NAS_ASSIGN_OR_RETURN(*note, GetStringOr(sp, where, "evaluated_on", ""));
  NAS_ASSIGN_OR_RETURN(const Json* paths, GetMember(sp, where, "paths"));
  if (!paths->is_array() || paths->size() > 4096) {
    return absl::InvalidArgumentError(where + ".paths: expected an array of at most 4096 paths");
  }
  for (size_t i = 0; i < paths->size(); ++i) {
    const std::string w = absl::StrCat(where, ".paths[", i, "]");
    const Json& p = (*paths)[i];
    if (!p.is_object()) return absl::InvalidArgumentError(w + ": not an object");
    PathPoint q;
    NAS_ASSIGN_OR_RETURN(q.source, GetString(p, w, "source"));
    NAS_ASSIGN_OR_RETURN(q.choices, GetIntList(p, w, "choices"));
    NAS_ASSIGN_OR_RETURN(q.latency_ms, GetDouble(p, w, "predicted_latency_ms"));
    NAS_ASSIGN_OR_RETURN(q.accuracy, GetDouble(p, w, "accuracy"));
    if (q.choices.size() != static_cast<size_t>(space.num_edges())) {
      return absl::InvalidArgumentError(absl::StrCat(w, ".choices: ", q.choices.size(),
                                                     " choices for ", space.num_edges(),
                                                     " edges"));
    }
    for (size_t e = 0; e < q.choices.size(); ++e) {
      if (q.choices[e] < 0 || q.choices[e] >= static_cast<int>(space.edges()[e].candidates.size())) {
        return absl::InvalidArgumentError(absl::StrCat(w, ".choices[", e, "]: out of range"));
      }
    }
    out.push_back(std::move(q));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Charts

// Round tick steps: 1, 2 or 5 times a power of ten, about `n` ticks over [lo, hi].
std::vector<double> Ticks(double lo, double hi, int n) {
  std::vector<double> t;
  if (!(hi > lo)) return {lo};
  double raw = (hi - lo) / n;
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  }
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(v);
  return t;
}

struct Series {
  std::string name;
  std::string colour;
  std::vector<std::pair<double, double>> points;
};

struct Frame {
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  double left = 56, top = 26, width = 600, height = 200;
  double X(double x) const { return left + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * width; }
  double Y(double y) const { return top + height - (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5) * height; }
};

// Axes with ticks and labels into `svg`.
void Axes(const Frame& f, const std::string& xlabel, const std::string& ylabel, std::string* svg) {
  absl::StrAppend(svg, "<g class=\"axes\" font-size=\"11\" fill=\"#333\">");
  absl::StrAppend(svg, "<rect x=\"", Px(f.left), "\" y=\"", Px(f.top), "\" width=\"",
                  Px(f.width), "\" height=\"", Px(f.height),
                  "\" fill=\"none\" stroke=\"#bbb\"/>");
  for (double v : Ticks(f.y0, f.y1, 5)) {
    double y = f.Y(v);
    absl::StrAppend(svg, "<line x1=\"", Px(f.left), "\" x2=\"", Px(f.left + f.width), "\" y1=\"",
                    Px(y), "\" y2=\"", Px(y), "\" stroke=\"#eee\"/><text x=\"", Px(f.left - 4),
                    "\" y=\"", Px(y + 4), "\" text-anchor=\"end\">", Num(v), "</text>");
  }
  for (double v : Ticks(f.x0, f.x1, 6)) {
    double x = f.X(v);
    absl::StrAppend(svg, "<text x=\"", Px(x), "\" y=\"", Px(f.top + f.height + 14),
                    "\" text-anchor=\"middle\">", Num(v), "</text>");
  }
  absl::StrAppend(svg, "<text x=\"", Px(f.left + f.width / 2), "\" y=\"",
                  Px(f.top + f.height + 30), "\" text-anchor=\"middle\">", Esc(xlabel),
                  "</text><text transform=\"translate(12,", Px(f.top + f.height / 2),
                  ") rotate(-90)\" text-anchor=\"middle\">", Esc(ylabel), "</text></g>");
}

void Legend(const Frame& f, const std::vector<std::pair<std::string, std::string>>& items,
            std::string* svg) {
  double x = f.left + 8;
  for (const auto& [name, colour] : items) {
    absl::StrAppend(svg, "<rect x=\"", Px(x), "\" y=\"", Px(f.top - 18), "\" width=\"10\" "
                    "height=\"10\" fill=\"", colour, "\"/><text x=\"", Px(x + 14), "\" y=\"",
                    Px(f.top - 9), "\" font-size=\"11\">", Esc(name), "</text>");
    x += 24 + 6.5 * static_cast<double>(name.size());
  }
}

// A line chart of `series` over a shared x axis, with an optional dashed reference line.
std::string LineChart(const std::string& id, const std::vector<Series>& series,
                      const std::string& xlabel, const std::string& ylabel,
                      double reference = std::numeric_limits<double>::quiet_NaN(),
                      const std::string& reference_label = "") {
  Frame f;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  double xmax = 0;
  for (const Series& s : series) {
    for (const auto& [x, y] : s.points) {
      lo = std::min(lo, y);
      hi = std::max(hi, y);
      xmax = std::max(xmax, x);
    }
  }
  if (std::isfinite(reference)) {
    lo = std::min(lo, reference);
    hi = std::max(hi, reference);
  }
  if (!std::isfinite(lo)) {
    return absl::StrCat("<p class=\"empty\" id=\"", id, "-empty\">No data.</p>");
  }
  double pad = hi > lo ? (hi - lo) * 0.08 : std::max(std::abs(hi) * 0.1, 1e-3);
  f.y0 = lo - pad;
  f.y1 = hi + pad;
  f.x1 = std::max(xmax, 1.0);
  std::string svg = absl::StrCat("<svg id=\"", id, "\" class=\"chart\" width=\"680\" "
                                 "height=\"274\" viewBox=\"0 0 680 274\" role=\"img\">");
  Axes(f, xlabel, ylabel, &svg);
  if (std::isfinite(reference)) {
    absl::StrAppend(&svg, "<line class=\"reference\" x1=\"", Px(f.left), "\" x2=\"",
                    Px(f.left + f.width), "\" y1=\"", Px(f.Y(reference)), "\" y2=\"",
                    Px(f.Y(reference)), "\" stroke=\"#d62728\" stroke-dasharray=\"6 4\"/>",
                    "<text x=\"", Px(f.left + f.width - 4), "\" y=\"", Px(f.Y(reference) - 4),
                    "\" text-anchor=\"end\" font-size=\"11\" fill=\"#d62728\">",
                    Esc(reference_label), "</text>");
  }
  std::vector<std::pair<std::string, std::string>> legend;
  for (const Series& s : series) {
    if (s.points.empty()) continue;
    std::string d;
    for (const auto& [x, y] : s.points) {
      absl::StrAppend(&d, d.empty() ? "M" : " L", Px(f.X(x)), " ", Px(f.Y(y)));
    }
    absl::StrAppend(&svg, "<path class=\"series\" d=\"", d, "\" fill=\"none\" stroke=\"",
                    s.colour, "\" stroke-width=\"1.6\"><title>", Esc(s.name), "</title></path>");
    legend.push_back({s.name, s.colour});
  }
  Legend(f, legend, &svg);
  absl::StrAppend(&svg, "</svg>");
  return svg;
}

// Which history lines become heat-map columns: every arch step, or `max` of them evenly, the
// first and last always.
std::vector<size_t> Columns(size_t n, int max) {
  std::vector<size_t> cols;
  if (n == 0) return cols;
  size_t m = std::min(n, static_cast<size_t>(std::max(max, 2)));
  for (size_t k = 0; k < m; ++k) {
    size_t i = m == 1 ? 0 : (k * (n - 1) + (m - 1) / 2) / (m - 1);
    if (cols.empty() || cols.back() != i) cols.push_back(i);
  }
  return cols;
}

std::string HeatMap(const SearchSpace& space, const Palette& pal,
                    const std::vector<HistoryPoint>& hist, int max_columns) {
  const int edges = space.num_edges();
  std::vector<size_t> cols = Columns(hist.size(), max_columns);
  const double label_w = 74, cell_h = 16, bar_w = 120, gap = 12;
  const double cell_w =
      std::max(2.0, std::min(40.0, 560.0 / static_cast<double>(std::max<size_t>(1, cols.size()))));
  const double grid_w = cell_w * static_cast<double>(cols.size());
  const double width = std::max(720.0, label_w + grid_w + gap + bar_w + 10);
  // The legend's items, laid out in rows under the grid.
  std::vector<std::pair<std::string, std::string>> items;
  for (const std::string& n : pal.names()) {
    auto c = Candidate::Parse(n);
    items.push_back({n, c.ok() ? pal.Of(*c) : kPalette[0]});
  }
  if (pal.has_zero()) items.push_back({"Zero (skip)", kZeroColour});
  std::vector<std::pair<double, double>> at;
  double lx = label_w, ly = 18 + cell_h * edges + 16;
  for (const auto& item : items) {
    double w = 24 + 6.5 * static_cast<double>(item.first.size());
    if (lx + w > width && lx > label_w) {
      lx = label_w;
      ly += 16;
    }
    at.push_back({lx, ly});
    lx += w;
  }
  const double height = ly + 10;
  std::string svg = absl::StrFormat(
      "<svg id=\"heatmap-svg\" width=\"%s\" height=\"%s\" viewBox=\"0 0 %s %s\" role=\"img\" "
      "font-size=\"11\">",
      Px(width), Px(height), Px(width), Px(height));
  absl::StrAppend(&svg, "<text x=\"", Px(label_w), "\" y=\"12\">arch step &#8594;</text>",
                  "<text x=\"", Px(label_w + grid_w + gap), "\" y=\"12\">final</text>");
  for (int e = 0; e < edges; ++e) {
    const EdgeSpec& edge = space.edges()[e];
    double y = 18 + cell_h * e;
    absl::StrAppend(&svg, "<g class=\"heatmap-row\" data-edge=\"", e, "\"><text x=\"",
                    Px(label_w - 6), "\" y=\"", Px(y + 12), "\" text-anchor=\"end\">edge ", e,
                    "</text>");
    for (size_t c = 0; c < cols.size(); ++c) {
      const std::vector<double>& p = hist[cols[c]].probs[e];
      size_t best = std::max_element(p.begin(), p.end()) - p.begin();
      // Depth: from 1/K (undecided, pale) to 1 (certain, solid).
      double k = static_cast<double>(p.size());
      double depth = k > 1 ? (p[best] - 1 / k) / (1 - 1 / k) : 1;
      std::string tip = absl::StrCat("edge ", e, ", step ", cols[c], ":");
      for (size_t i = 0; i < p.size(); ++i) {
        absl::StrAppend(&tip, " ", edge.candidates[i].Name(), " ",
                        absl::StrFormat("%.3f", p[i]));
      }
      absl::StrAppend(&svg, "<rect class=\"cell\" x=\"", Px(label_w + cell_w * c), "\" y=\"",
                      Px(y), "\" width=\"", Px(cell_w + 0.2), "\" height=\"", Px(cell_h - 1),
                      "\" fill=\"", pal.Of(edge.candidates[best]), "\" fill-opacity=\"",
                      absl::StrFormat("%.3f", 0.12 + 0.88 * std::clamp(depth, 0.0, 1.0)),
                      "\"><title>", Esc(tip), "</title></rect>");
    }
    // The final distribution as a stacked bar.
    const std::vector<double>& last = hist.back().probs[e];
    double x = label_w + grid_w + gap;
    for (size_t i = 0; i < last.size(); ++i) {
      double w = bar_w * last[i];
      if (w <= 0) continue;
      absl::StrAppend(&svg, "<rect class=\"final\" x=\"", Px(x), "\" y=\"", Px(y),
                      "\" width=\"", Px(w), "\" height=\"", Px(cell_h - 1), "\" fill=\"",
                      pal.Of(edge.candidates[i]), "\"><title>",
                      Esc(absl::StrCat("edge ", e, " final: ", edge.candidates[i].Name(), " ",
                                       absl::StrFormat("%.3f", last[i]))),
                      "</title></rect>");
      x += w;
    }
    absl::StrAppend(&svg, "</g>");
  }
  for (size_t i = 0; i < items.size(); ++i) {
    absl::StrAppend(&svg, "<rect x=\"", Px(at[i].first), "\" y=\"", Px(at[i].second - 9),
                    "\" width=\"10\" height=\"10\" fill=\"", items[i].second, "\"/><text x=\"",
                    Px(at[i].first + 14), "\" y=\"", Px(at[i].second), "\">", Esc(items[i].first),
                    "</text>");
  }
  absl::StrAppend(&svg, "</svg>");
  return svg;
}

std::string NetworkDrawing(const SearchSpace& space, const Palette& pal,
                           const std::vector<int>& choices) {
  const double max_w = 940, row_h = 118, x0 = 8;
  double x = x0, y = 22;
  int rows = 1;
  std::string body;
  auto place = [&](double w) {
    if (x + w > max_w && x > x0) {
      x = x0;
      y += row_h;
      ++rows;
    }
    double at = x;
    x += w + 6;
    return at;
  };
  {
    double at = place(52);
    absl::StrAppend(&body, "<g class=\"stem\"><rect x=\"", Px(at), "\" y=\"", Px(y + 24),
                    "\" width=\"52\" height=\"44\" rx=\"4\" fill=\"#f0f0f0\" stroke=\"#555\"/>"
                    "<text x=\"", Px(at + 26), "\" y=\"", Px(y + 50),
                    "\" text-anchor=\"middle\">stem</text></g>");
  }
  int prev_channels = -1;
  for (int e = 0; e < space.num_edges(); ++e) {
    const EdgeSpec& edge = space.edges()[e];
    const Candidate& c = edge.candidates[choices[e]];
    double w = c.zero ? 26 : 18 + 5.0 * c.expand;
    double h = c.zero ? 26 : 24 + 6.0 * c.kernel;
    double at = place(w);
    if (edge.stride != 1 || edge.out_channels != prev_channels) {
      absl::StrAppend(&body, "<text class=\"stage\" x=\"", Px(at), "\" y=\"", Px(y - 6),
                      "\" font-size=\"10\" fill=\"#555\">", edge.out_channels, "ch",
                      edge.stride != 1 ? absl::StrCat(" /", edge.stride) : std::string(),
                      "</text>");
      prev_channels = edge.out_channels;
    }
    std::string tip = absl::StrCat("edge ", e, ": ", c.Name(), ", ", edge.in_channels, "->",
                                   edge.out_channels, " channels, stride ", edge.stride, ", ",
                                   edge.in_height, "x", edge.in_width, " input");
    double top = y + (96 - h) / 2;
    absl::StrAppend(&body, "<g class=\"block", c.zero ? " skipped" : "", "\" data-edge=\"", e,
                    "\" data-choice=\"", Esc(c.Name()), "\"><title>", Esc(tip), "</title>");
    if (c.zero) {
      absl::StrAppend(&body, "<rect x=\"", Px(at), "\" y=\"", Px(top), "\" width=\"", Px(w),
                      "\" height=\"", Px(h), "\" rx=\"3\" fill=\"none\" stroke=\"", kZeroColour,
                      "\" stroke-dasharray=\"3 3\"/><text x=\"", Px(at + w / 2), "\" y=\"",
                      Px(top + h / 2 + 4), "\" text-anchor=\"middle\" font-size=\"9\" fill=\"",
                      kZeroColour, "\">skip</text>");
    } else {
      absl::StrAppend(&body, "<rect x=\"", Px(at), "\" y=\"", Px(top), "\" width=\"", Px(w),
                      "\" height=\"", Px(h), "\" rx=\"3\" fill=\"", pal.Of(c),
                      "\" fill-opacity=\"0.85\" stroke=\"#333\"/><text x=\"", Px(at + w / 2),
                      "\" y=\"", Px(top + h / 2 - 2), "\" text-anchor=\"middle\" font-size=\"11\" "
                      "fill=\"#fff\">", c.kernel, "x", c.kernel, "</text><text x=\"",
                      Px(at + w / 2), "\" y=\"", Px(top + h / 2 + 11),
                      "\" text-anchor=\"middle\" font-size=\"10\" fill=\"#fff\">e", c.expand,
                      "</text>");
    }
    absl::StrAppend(&body, "</g>");
  }
  {
    double at = place(52);
    absl::StrAppend(&body, "<g class=\"head\"><rect x=\"", Px(at), "\" y=\"", Px(y + 24),
                    "\" width=\"52\" height=\"44\" rx=\"4\" fill=\"#f0f0f0\" stroke=\"#555\"/>"
                    "<text x=\"", Px(at + 26), "\" y=\"", Px(y + 44),
                    "\" text-anchor=\"middle\">pool</text><text x=\"", Px(at + 26), "\" y=\"",
                    Px(y + 58), "\" text-anchor=\"middle\">+ fc</text></g>");
  }
  double height = 22 + row_h * rows;
  return absl::StrCat("<svg id=\"network-svg\" width=\"", Px(max_w + 10), "\" height=\"",
                      Px(height), "\" viewBox=\"0 0 ", Px(max_w + 10), " ", Px(height),
                      "\" role=\"img\" font-size=\"11\">", body, "</svg>");
}

std::string ParetoChart(const std::vector<PathPoint>& paths, const NetworkFacts& derived,
                        const NetworkFacts& baseline, const std::string& note) {
  if (paths.empty() && !derived.present) {
    return "<p class=\"empty\" id=\"pareto-empty\">No paths were evaluated.</p>";
  }
  Frame f;
  f.width = 620;
  f.height = 300;
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  auto extend = [&](double x, double y) {
    if (!std::isfinite(x) || !std::isfinite(y)) return;
    xlo = std::min(xlo, x);
    xhi = std::max(xhi, x);
    ylo = std::min(ylo, y);
    yhi = std::max(yhi, y);
  };
  for (const PathPoint& p : paths) extend(p.latency_ms, p.accuracy);
  for (const NetworkFacts* n : {&derived, &baseline}) {
    if (n->present) extend(n->predicted_ms, n->test_accuracy);
  }
  if (!std::isfinite(xlo)) return "<p class=\"empty\" id=\"pareto-empty\">No paths were evaluated.</p>";
  double xp = xhi > xlo ? (xhi - xlo) * 0.06 : 0.1, yp = yhi > ylo ? (yhi - ylo) * 0.08 : 0.02;
  f.x0 = std::max(0.0, xlo - xp);
  f.x1 = xhi + xp;
  f.y0 = std::max(0.0, ylo - yp);
  f.y1 = std::min(1.0, yhi + yp);
  if (!(f.y1 > f.y0)) f.y1 = f.y0 + 0.01;
  std::string svg = "<svg id=\"pareto-svg\" class=\"chart\" width=\"700\" height=\"374\" "
                    "viewBox=\"0 0 700 374\" role=\"img\">";
  Axes(f, "predicted latency (ms)", "accuracy", &svg);
  // The Pareto front of the inherited-weight paths: no other path is both faster and better.
  std::vector<const PathPoint*> sorted;
  for (const PathPoint& p : paths) sorted.push_back(&p);
  std::sort(sorted.begin(), sorted.end(), [](const PathPoint* a, const PathPoint* b) {
    return a->latency_ms < b->latency_ms ||
           (a->latency_ms == b->latency_ms && a->accuracy > b->accuracy);
  });
  std::string front;
  double best = -1;
  int on_front = 0;
  for (const PathPoint* p : sorted) {
    if (p->accuracy > best) {
      best = p->accuracy;
      // A staircase: between two front paths, the best accuracy a latency budget buys.
      if (front.empty()) {
        absl::StrAppend(&front, "M", Px(f.X(p->latency_ms)), " ", Px(f.Y(p->accuracy)));
      } else {
        absl::StrAppend(&front, " H", Px(f.X(p->latency_ms)), " V", Px(f.Y(p->accuracy)));
      }
      ++on_front;
    }
  }
  if (on_front > 1) {
    absl::StrAppend(&svg, "<path class=\"front\" d=\"", front,
                    "\" fill=\"none\" stroke=\"#555\" stroke-dasharray=\"4 3\"/>");
  }
  auto colour = [](const std::string& source) -> std::string {
    if (source == "derived") return "#d62728";
    if (source == "baseline") return "#ff7f0e";
    if (source == "alpha") return "#1f77b4";
    return "#7f7f7f";
  };
  for (const PathPoint& p : paths) {
    const bool big = p.source == "derived" || p.source == "baseline";
    absl::StrAppend(&svg, "<circle class=\"path ", Esc(p.source), "\" cx=\"",
                    Px(f.X(p.latency_ms)), "\" cy=\"", Px(f.Y(p.accuracy)), "\" r=\"",
                    big ? "6" : "4", "\" fill=\"", colour(p.source), "\" fill-opacity=\"0.85\">",
                    "<title>", Esc(absl::StrCat(p.source, " path (inherited weights): ",
                                                Pct(p.accuracy), " at ", Num(p.latency_ms),
                                                " ms")),
                    "</title></circle>");
  }
  for (const auto& [label, n] : {std::pair<std::string, const NetworkFacts*>{"derived", &derived},
                                 {"baseline", &baseline}}) {
    if (!n->present || !std::isfinite(n->test_accuracy) || !std::isfinite(n->predicted_ms)) {
      continue;
    }
    double cx = f.X(n->predicted_ms), cy = f.Y(n->test_accuracy);
    absl::StrAppend(&svg, "<g class=\"trained ", label, "\"><rect x=\"", Px(cx - 6), "\" y=\"",
                    Px(cy - 6), "\" width=\"12\" height=\"12\" fill=\"none\" stroke=\"",
                    colour(label), "\" stroke-width=\"2\"/><title>",
                    Esc(absl::StrCat(label, " trained from scratch: ", Pct(n->test_accuracy),
                                     " test accuracy at ", Num(n->predicted_ms), " ms")),
                    "</title></g>");
  }
  Legend(f,
         {{"derived path", colour("derived")},
          {"baseline path", colour("baseline")},
          {"sampled from alpha", colour("alpha")},
          {"uniform sample", colour("uniform")}},
         &svg);
  absl::StrAppend(&svg, "</svg>");
  std::string html = svg;
  absl::StrAppend(&html, "<p class=\"caption\">Dots: paths of the trained supernet evaluated "
                         "with their inherited weights",
                  note.empty() ? "" : " (" + Esc(note) + ")",
                  "; dashed: their Pareto front. Squares: the derived and baseline networks "
                  "trained from scratch, test accuracy. Latency is the table's prediction.</p>");
  return html;
}

constexpr const char* kStyle = R"(body{font-family:"DejaVu Sans",Arial,sans-serif;margin:24px;color:#222;max-width:1000px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}.facts{color:#555;font-size:13px}.caption{font-size:12px;color:#555}
svg{display:block}.empty{color:#777;font-style:italic})";

}  // namespace

absl::StatusOr<std::string> RenderReportHtml(const ReportInputs& in,
                                             const ReportHtmlOptions& options) {
  NAS_ASSIGN_OR_RETURN(SearchSpace space, SearchSpace::FromJson(in.space_json));
  NAS_ASSIGN_OR_RETURN(Architecture arch, Architecture::FromJson(in.architecture_json, space));
  NAS_ASSIGN_OR_RETURN(Json report, ParseJson(in.report_json, "report.json"));
  if (!report.is_object()) return absl::InvalidArgumentError("report.json: not a JSON object");
  NAS_ASSIGN_OR_RETURN(std::vector<HistoryPoint> hist, ParseHistory(in.history, space, options));
  NAS_ASSIGN_OR_RETURN(NetworkFacts derived, ParseNetwork(report, "derived"));
  NAS_ASSIGN_OR_RETURN(NetworkFacts baseline, ParseNetwork(report, "baseline"));
  std::string paths_note;
  NAS_ASSIGN_OR_RETURN(std::vector<PathPoint> paths, ParsePaths(report, space, &paths_note));
  NAS_ASSIGN_OR_RETURN(double target, GetDoubleOr(report, "report.json", "target_latency_ms",
                                                  std::numeric_limits<double>::quiet_NaN()));
  // The facts line's strings: absent is empty, another type an error like every other field.
  std::map<std::string, std::string> facts;
  for (const char* key : {"dataset", "device", "runtime", "loss"}) {
    NAS_ASSIGN_OR_RETURN(facts[key], GetStringOr(report, "report.json", key, ""));
  }
  auto text = [&](const char* key) { return facts[key]; };
  Palette pal(space);

  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
      "style-src 'unsafe-inline'; img-src data:\">";
  absl::StrAppend(&html, "<title>", Esc(in.title), " - search report</title><style>", kStyle,
                  "</style></head><body>");
  absl::StrAppend(&html, "<h1>Search report: ", Esc(in.title), "</h1>");

  // Summary.
  absl::StrAppend(&html, "<section id=\"summary\"><p class=\"facts\">space <b>",
                  Esc(space.name()), "</b>, data <b>", Esc(text("dataset")), "</b>, device <b>",
                  Esc(text("device")), "</b> (", Esc(text("runtime")), "), loss ",
                  Esc(text("loss")), ", target ", Num(target), " ms, ", hist.size(),
                  " history points</p><table><tr><th>network</th><th>test accuracy</th>"
                  "<th>predicted ms</th><th>measured ms</th><th>parameters</th></tr>");
  for (const auto& [label, n] : {std::pair<std::string, const NetworkFacts*>{"derived", &derived},
                                 {"baseline", &baseline}}) {
    if (!n->present) continue;
    absl::StrAppend(&html, "<tr class=\"", label, "\"><td>", label, "</td><td>",
                    Pct(n->test_accuracy), "</td><td>", Num(n->predicted_ms), "</td><td>",
                    Num(n->measured_ms),
                    std::isfinite(n->measured_std_ms) ? " &#177; " + Num(n->measured_std_ms)
                                                      : std::string(),
                    "</td><td>", Num(n->parameters), "</td></tr>");
  }
  absl::StrAppend(&html, "</table><p class=\"facts\">derived: ", Esc(arch.ToString(space)),
                  "</p></section>");

  // Heat map.
  absl::StrAppend(&html, "<section id=\"heatmap\"><h2>Architecture probabilities per edge</h2>");
  if (hist.empty()) {
    absl::StrAppend(&html, "<p class=\"empty\">No history.</p>");
  } else {
    absl::StrAppend(&html, HeatMap(space, pal, hist, options.max_columns),
                    "<p class=\"caption\">Colour: the edge's most probable candidate at that "
                    "step; depth: its probability (pale at 1/K, solid at 1). Right: the final "
                    "distribution.</p>");
  }
  absl::StrAppend(&html, "</section>");

  // Latency and training curves over arch steps.
  Series lat{"expected latency (ms)", "#1f77b4", {}};
  Series loss{"training loss", "#ff7f0e", {}};
  Series acc{"validation accuracy", "#2ca02c", {}};
  for (size_t i = 0; i < hist.size(); ++i) {
    const HistoryPoint& p = hist[i];
    double x = static_cast<double>(i);
    if (std::isfinite(p.expected_ms)) lat.points.push_back({x, p.expected_ms});
    if (p.phase != "search") continue;  // init and final carry no step's loss
    if (std::isfinite(p.loss)) loss.points.push_back({x, p.loss});
    if (std::isfinite(p.accuracy)) acc.points.push_back({x, p.accuracy});
  }
  absl::StrAppend(&html, "<section id=\"latency\"><h2>Expected latency against the target</h2>",
                  LineChart("latency-svg", {lat}, "history point (arch step)", "ms", target,
                            absl::StrCat("target ", Num(target), " ms")),
                  "</section>");
  absl::StrAppend(&html, "<section id=\"training\"><h2>Training loss and validation "
                         "accuracy</h2>",
                  LineChart("loss-svg", {loss}, "history point (arch step)", "loss"),
                  LineChart("accuracy-svg", {acc}, "history point (arch step)", "accuracy"),
                  "</section>");

  // The derived network.
  absl::StrAppend(&html, "<section id=\"network\"><h2>Derived network</h2>",
                  NetworkDrawing(space, pal, arch.choices),
                  "<p class=\"caption\">One box per searchable block: height by kernel size, "
                  "width by expansion ratio; dashed: skipped (Zero). Labels: output channels "
                  "and stride where a stage begins.</p></section>");

  // Pareto view.
  absl::StrAppend(&html, "<section id=\"pareto\"><h2>Accuracy against latency</h2>",
                  ParetoChart(paths, derived, baseline, paths_note), "</section>");
  absl::StrAppend(&html, "</body></html>\n");
  return html;
}

absl::Status WriteReportHtml(const std::string& dir, const std::string& title) {
  constexpr size_t kMaxFileBytes = size_t{256} << 20;
  auto read = [&](const std::string& name) -> absl::StatusOr<std::string> {
    std::string path = dir + "/" + name;
    std::ifstream f(path, std::ios::binary);
    if (!f) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
    std::string text;
    char buf[1 << 16];
    while (f.read(buf, sizeof(buf)) || f.gcount() > 0) {
      text.append(buf, static_cast<size_t>(f.gcount()));
      if (text.size() > kMaxFileBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": larger than the limit of ", kMaxFileBytes, " bytes"));
      }
    }
    return text;
  };
  ReportInputs in;
  in.title = title;
  NAS_ASSIGN_OR_RETURN(in.report_json, read("report.json"));
  NAS_ASSIGN_OR_RETURN(in.space_json, read("search_space.json"));
  NAS_ASSIGN_OR_RETURN(in.architecture_json, read("architecture.json"));
  NAS_ASSIGN_OR_RETURN(std::string history, read("alpha_history.jsonl"));
  std::istringstream lines(history);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) in.history.push_back(std::move(line));
  }
  NAS_ASSIGN_OR_RETURN(std::string html, RenderReportHtml(in));
  std::string path = dir + "/report.html";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << html;
  out.close();
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  return absl::OkStatus();
}

}  // namespace nas
