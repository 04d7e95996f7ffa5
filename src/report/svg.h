#pragma once
/// The HTML/SVG primitives of the report pages (report/page.h): escaping,
/// number formatting, colour ramps and an SVG element writer. Everything the
/// pages emit goes through these, so that any text (layer names, paths, config
/// values) is escaped once, in one place, and the output is well-formed XML
/// as well as HTML (the e2e test parses it with an XML parser).
#include <cstdint>
#include <optional>
#include <string>

namespace glvq {

/// TEXT with & < > " ' replaced by entities: safe in element content and in
/// attribute values (either quote). Bytes that XML 1.0 forbids (control
/// characters other than tab, newline, carriage return) become U+FFFD, so a
/// stray byte in a name cannot make the page unparsable.
std::string xml_escape(const std::string& text);

/// V printed so that parsing it back gives exactly V (shortest round-trip
/// form, e.g. "0.1", "1e-05"); non-finite values print as "nan", "inf", "-inf".
std::string num_exact(double v);
/// V with SIG significant digits for reading ("0.0123", "1.23e+04"); "-" for
/// non-finite values.
std::string num_short(double v, int sig = 4);

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  std::string hex() const;  ///< "#rrggbb"
};
/// WCAG relative luminance of C in [0, 1] (sRGB decoded to linear light).
double relative_luminance(const Rgb& c);
/// The heatmap's sequential ramp: T in [0, 1] (clamped; NaN counts as 0) from a
/// pale yellow (T = 0, small values) to a dark red (T = 1); its luminance never
/// rises as T grows and falls at every step of 0.01, so darker means larger.
Rgb heat_colour(double t);
/// Where V lies on the heatmap's colour scale between LO and HI, on a log10
/// axis: 0 at LO, 1 at HI, clamped; 0.5 when LO == HI. Needs 0 < LO <= HI
/// and V > 0; anything else gives nullopt (drawn as "no data").
std::optional<double> log_scale_position(double v, double lo, double hi);

/// Appends SVG elements to a string; attribute values and text are escaped here.
class SvgWriter {
 public:
  /// Opens <svg> of WIDTH x HEIGHT px (viewBox the same), with an ARIA label.
  SvgWriter(double width, double height, const std::string& label);
  /// A rectangle; CLASS_NAME and the extra attributes are optional ("" = none).
  /// DATA_V, when set, goes into data-v as num_exact (the e2e test reads it).
  void rect(double x, double y, double w, double h, const std::string& fill, const std::string& class_name = "",
            const std::string& tooltip = "", std::optional<double> data_v = std::nullopt);
  void line(double x1, double y1, double x2, double y2, const std::string& stroke, double width = 1,
            const std::string& dash = "");
  /// ANCHOR: start, middle or end. Text is escaped.
  void text(double x, double y, const std::string& s, const std::string& anchor = "start", double size = 11,
            const std::string& class_name = "");
  void circle(double cx, double cy, double r, const std::string& fill, const std::string& tooltip = "",
              std::optional<double> data_x = std::nullopt, std::optional<double> data_y = std::nullopt);
  /// Points as "x,y x,y ..." built by the caller from numbers.
  void polyline(const std::string& points, const std::string& stroke, double width = 1.5);
  /// Closes the <svg> and returns the markup; the writer is spent afterwards.
  std::string finish();

 private:
  std::string out_;
  bool open_ = true;
};

/// Coordinates are printed with 2 decimals (sub-pixel is enough; keeps pages small).
std::string coord(double v);

}  // namespace glvq
