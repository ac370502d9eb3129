// toyllm plot RUN_DIR -o loss.svg: the training and validation loss of a run as an SVG
// line chart (no plotting library: a few dozen SVG elements).
#include "commands.h"
#include "common.h"

#include "toyllm/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace toyllm::cli {

namespace {

struct Series {
    const char * name;
    const char * color;
    std::vector<std::pair<double, double>> points;  // (step, loss)
};

std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", v);
    return buf;
}

std::string svg_chart(const std::string & title, const std::vector<Series> & series) {
    const double W = 800, H = 480, left = 70, right = 20, top = 40, bottom = 50;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (const Series & s : series) {
        for (auto [x, y] : s.points) {
            x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
        }
    }
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + 1;
    y0 = std::max(0.0, y0 - 0.05 * (y1 - y0));
    auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (W - left - right); };
    auto py = [&](double y) { return H - bottom - (y - y0) / (y1 - y0) * (H - top - bottom); };
    std::ostringstream o;
    o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
    o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    o << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << title << "</text>\n";
    for (int i = 0; i <= 5; ++i) {  // grid and tick labels
        const double fx = x0 + (x1 - x0) * i / 5, fy = y0 + (y1 - y0) * i / 5;
        o << "<line x1=\"" << px(fx) << "\" y1=\"" << top << "\" x2=\"" << px(fx) << "\" y2=\"" << H - bottom << "\" stroke=\"#ddd\"/>\n";
        o << "<line x1=\"" << left << "\" y1=\"" << py(fy) << "\" x2=\"" << W - right << "\" y2=\"" << py(fy) << "\" stroke=\"#ddd\"/>\n";
        o << "<text x=\"" << px(fx) << "\" y=\"" << H - bottom + 18 << "\" text-anchor=\"middle\">" << num(std::round(fx)) << "</text>\n";
        o << "<text x=\"" << left - 6 << "\" y=\"" << py(fy) + 4 << "\" text-anchor=\"end\">" << num(fy) << "</text>\n";
    }
    o << "<text x=\"" << (left + W - right) / 2 << "\" y=\"" << H - 10 << "\" text-anchor=\"middle\">step</text>\n";
    o << "<text x=\"16\" y=\"" << (top + H - bottom) / 2 << "\" text-anchor=\"middle\" transform=\"rotate(-90 16 " << (top + H - bottom) / 2
      << ")\">loss</text>\n";
    double legend_y = top + 10;
    for (const Series & s : series) {
        if (s.points.empty()) continue;
        o << "<polyline fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"1.5\" points=\"";
        for (auto [x, y] : s.points) o << px(x) << "," << py(y) << " ";
        o << "\"/>\n";
        if (s.points.size() < 60) {
            for (auto [x, y] : s.points) o << "<circle cx=\"" << px(x) << "\" cy=\"" << py(y) << "\" r=\"2.5\" fill=\"" << s.color << "\"/>\n";
        }
        o << "<line x1=\"" << W - right - 150 << "\" y1=\"" << legend_y << "\" x2=\"" << W - right - 125 << "\" y2=\"" << legend_y
          << "\" stroke=\"" << s.color << "\" stroke-width=\"2\"/>\n";
        o << "<text x=\"" << W - right - 118 << "\" y=\"" << legend_y + 4 << "\">" << s.name << "</text>\n";
        legend_y += 18;
    }
    o << "</svg>\n";
    return o.str();
}

}  // namespace

int cmd_plot(const std::vector<std::string> & argv) {
    Args args("toyllm plot RUN_DIR -o OUT.svg", "Draws the training and validation loss of a run (its metrics.jsonl) as an SVG chart.",
              {{"-o", "FILE", "the SVG to write"}});
    if (!args.parse(argv, 1, 1)) return 0;
    const auto out = args.get("-o");
    if (!out) throw UsageError("-o OUT.svg is required");
    const std::string dir = args.positional()[0];
    const std::string path = (std::filesystem::path(dir) / "metrics.jsonl").string();
    std::ifstream in(path);
    if (!in) throw Error("cannot read " + path + " (is '" + dir + "' a run directory?)");
    std::vector<Series> series = {{"train loss", "#1f77b4", {}}, {"validation loss", "#ff7f0e", {}}};
    std::string line;
    int line_no = 0;
    while (std::getline(in, line)) {
        ++line_no;
        if (line.empty()) continue;
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object()) throw Error(path + ":" + std::to_string(line_no) + ": not a JSON object");
        const double step = j.value("step", 0.0);
        if (j.contains("loss")) series[0].points.emplace_back(step, j["loss"].get<double>());
        if (j.contains("val_loss")) series[1].points.emplace_back(step, j["val_loss"].get<double>());
    }
    if (series[0].points.empty() && series[1].points.empty()) throw Error(path + " holds no loss values yet");
    std::ofstream o(*out);
    o << svg_chart(dir, series);
    if (!o) throw Error("cannot write " + *out);
    std::fprintf(stderr, "wrote %s: %zu training and %zu validation points\n", out->c_str(), series[0].points.size(), series[1].points.size());
    return 0;
}

}  // namespace toyllm::cli
