/* A tight single-threaded C reference: vertex-weighted 8-neighbour grid Dijkstra with a
 * lazy-deletion binary heap of (distance, cell) pairs, early exit at the target, both ends
 * counted. Used only by bench/ as the "compiled C" yardstick (built with the system cc).
 * costs: n * h * w doubles; out_cost: n doubles (the optimal path cost of each instance). */
#include <math.h>
#include <stdlib.h>

typedef struct { double d; int v; } item;

static int less(item a, item b) { return a.d < b.d || (a.d == b.d && a.v < b.v); }

void c_dijkstra_batch(const double *costs, int n, int h, int w, double *out_cost) {
    int hw = h * w;
    double *dist = malloc(sizeof(double) * hw);
    char *done = malloc(hw);
    item *heap = malloc(sizeof(item) * (8 * hw + 1));
    static const int dr[8] = {-1, -1, -1, 0, 0, 1, 1, 1};
    static const int dc[8] = {-1, 0, 1, -1, 1, -1, 0, 1};
    for (int b = 0; b < n; b++) {
        const double *c = costs + (size_t)b * hw;
        for (int i = 0; i < hw; i++) { dist[i] = INFINITY; done[i] = 0; }
        int size = 0, t = hw - 1;
        dist[0] = c[0];
        heap[size++] = (item){c[0], 0};
        while (size > 0) {
            item top = heap[0];
            item last = heap[--size];
            int i = 0;
            for (;;) { /* sift down */
                int k = 2 * i + 1;
                if (k >= size) break;
                if (k + 1 < size && less(heap[k + 1], heap[k])) k++;
                if (!less(heap[k], last)) break;
                heap[i] = heap[k];
                i = k;
            }
            heap[i] = last;
            int u = top.v;
            if (done[u]) continue;
            done[u] = 1;
            if (u == t) break;
            int r = u / w, q = u % w;
            for (int k = 0; k < 8; k++) {
                int rr = r + dr[k], qq = q + dc[k];
                if (rr < 0 || rr >= h || qq < 0 || qq >= w) continue;
                int v = rr * w + qq;
                double nd = top.d + c[v];
                if (nd < dist[v]) {
                    dist[v] = nd;
                    item it = {nd, v};
                    int j = size++;
                    while (j > 0 && less(it, heap[(j - 1) / 2])) { /* sift up */
                        heap[j] = heap[(j - 1) / 2];
                        j = (j - 1) / 2;
                    }
                    heap[j] = it;
                }
            }
        }
        out_cost[b] = dist[t];
    }
    free(dist);
    free(done);
    free(heap);
}
