//! Durations written as formulas of the timing parameters, so that a drill's expectation says
//! where its figure comes from: `vmotion_stun + control_plane_notice + max(move_secondary_ip,
//! replace_route)`. A term is a timing parameter's name, a duration (`500ms`, `1.2s`), or
//! `max(…)` / `min(…)` of sums; a number may scale a term (`0.5 * eni_reattach`); terms are
//! added with `+` and subtracted with `-` (never below zero).

use std::time::Duration;

use vmcnet_topo::Timing;

/// The value of `expr` under `timing`, or what is wrong with it.
pub fn eval(expr: &str, timing: &Timing) -> Result<Duration, String> {
    let mut p = Parser {
        s: expr.as_bytes(),
        i: 0,
        timing,
    };
    let v = p.sum()?;
    p.skip_space();
    if p.i != p.s.len() {
        return Err(format!("`{expr}`: unexpected `{}`", &expr[p.i..]));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    timing: &'a Timing,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn sum(&mut self) -> Result<Duration, String> {
        let mut v = self.term()?;
        loop {
            if self.eat(b'+') {
                v += self.term()?;
            } else if self.eat(b'-') {
                let x = self.term()?;
                v = v
                    .checked_sub(x)
                    .ok_or_else(|| "a difference below zero".to_string())?;
            } else {
                return Ok(v);
            }
        }
    }

    fn word(&mut self) -> &str {
        self.skip_space();
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or("")
    }

    fn term(&mut self) -> Result<Duration, String> {
        let w = self.word().to_string();
        if w.is_empty() {
            return Err("a term is missing".into());
        }
        if let Ok(k) = w.parse::<f64>() {
            if !self.eat(b'*') {
                return Err(format!("`{w}` wants a unit, or `* term` after it"));
            }
            let v = self.term()?;
            if !(k.is_finite() && k >= 0.0) {
                return Err(format!("`{w}` cannot scale a duration"));
            }
            return Ok(v.mul_f64(k));
        }
        if w == "max" || w == "min" {
            if !self.eat(b'(') {
                return Err(format!("`{w}` takes its terms in parentheses"));
            }
            let mut v = self.sum()?;
            while self.eat(b',') {
                let x = self.sum()?;
                v = if w == "max" { v.max(x) } else { v.min(x) };
            }
            if !self.eat(b')') {
                return Err(format!("`{w}(`: a `)` is missing"));
            }
            return Ok(v);
        }
        if w.starts_with(|c: char| c.is_ascii_digit()) {
            return humantime::parse_duration(&w)
                .map_err(|e| format!("`{w}` is not a duration: {e}"));
        }
        timing_param(self.timing, &w).ok_or_else(|| {
            format!(
                "`{w}` is not a timing parameter ({})",
                TIMING_NAMES.join(", ")
            )
        })
    }
}

/// The timing parameters that are durations, by name.
pub const TIMING_NAMES: [&str; 11] = [
    "vmotion_stun",
    "bfd_interval",
    "promotion",
    "control_plane_notice",
    "move_secondary_ip",
    "replace_route",
    "eni_reattach",
    "ha_host_dead",
    "ha_restart",
    "replacement_host",
    "bfd_dead",
];

fn timing_param(t: &Timing, name: &str) -> Option<Duration> {
    Some(match name {
        "vmotion_stun" => t.vmotion_stun,
        "bfd_interval" => t.bfd_interval,
        "promotion" => t.promotion,
        "control_plane_notice" => t.control_plane_notice,
        "move_secondary_ip" => t.move_secondary_ip,
        "replace_route" => t.replace_route,
        "eni_reattach" => t.eni_reattach,
        "ha_host_dead" => t.ha_host_dead,
        "ha_restart" => t.ha_restart,
        "replacement_host" => t.replacement_host,
        // BFD declares the peer dead after this many intervals without a packet.
        "bfd_dead" => t.bfd_interval * t.bfd_multiplier,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_maxima_and_literals_of_the_timing_parameters() {
        let t = Timing::default();
        let v = eval(
            "vmotion_stun + control_plane_notice + max(move_secondary_ip, replace_route)",
            &t,
        )
        .unwrap();
        assert_eq!(v, t.vmotion_stun + t.control_plane_notice + t.replace_route);
        assert_eq!(
            eval("500ms + min(1s, eni_reattach)", &t).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            eval("bfd_dead", &t).unwrap(),
            t.bfd_interval * t.bfd_multiplier
        );
        assert_eq!(eval("0.5 * eni_reattach", &t).unwrap(), t.eni_reattach / 2);
        assert!(eval("2", &t).is_err());
        assert_eq!(
            eval("bfd_dead - bfd_interval", &t).unwrap(),
            t.bfd_interval * (t.bfd_multiplier - 1)
        );
        assert!(eval("1s - 2s", &t).is_err());
        assert!(eval("stun", &t)
            .unwrap_err()
            .contains("not a timing parameter"));
        assert!(eval("max(1s", &t).is_err());
        assert!(eval("1s +", &t).is_err());
        assert!(eval("1s 2s", &t).unwrap_err().contains("unexpected"));
    }
}
