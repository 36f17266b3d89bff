use privpkt_privacy::*;
use std::time::Instant;
fn main() {
    let args: Vec<f64> = std::env::args().skip(1).map(|s| s.parse().unwrap()).collect();
    for c in args.chunks(4) {
        let (q, s, n, d) = (c[0], c[1], c[2] as u64, c[3]);
        let t = Instant::now();
        let r = rdp_epsilon(&[Phase::new(q, s, n).unwrap()], d);
        let p = prv_epsilon(&[Phase::new(q, s, n).unwrap()], d, PrvOptions::default());
        match (r, p) {
            (Ok(r), Ok(p)) => println!("{q} {s} {n} {d} RDP {:.9} {} PRV {:.9} {:.9} {:.9} {:?}", r.epsilon, r.order, p.eps_lower, p.eps_estimate, p.eps_upper, t.elapsed()),
            (r, p) => println!("{q} {s} {n} {d} ERR {r:?} {p:?}"),
        }
    }
}
