#ifndef RINGBUF_H
#define RINGBUF_H

#include <stddef.h>
#include <stdint.h>

#define RB_CAPACITY 64

struct ringbuf {
    uint8_t data[RB_CAPACITY];
    size_t head; /* next slot to write */
    size_t tail; /* next slot to read */
    size_t count;
};

void rb_init(struct ringbuf *rb);
int rb_push(struct ringbuf *rb, uint8_t byte);
int rb_pop(struct ringbuf *rb, uint8_t *byte);

#endif
